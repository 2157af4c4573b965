"""Executes the YAML cases against a server through the grpcio stack; mirrors
conformance/src/runner/server-runner.ts (same steps, macros, results)."""
import fnmatch
import os
import re
import hashlib
import time

from . import fixtures as fx
from .matcher import match
from .values import CaseError, Evaluator, as_bytes, get_path, lookup, to_b64, to_wire

STEP_KINDS = ["open", "call", "send", "receive", "quiet", "end", "close", "let", "identity", "create_account", "authenticate", "link_device", "repeat", "sleep", "verify_sender_certificate", "verify_log_inclusion", "verify_log_consistency"]
CALL_TIMEOUT_MS = 10000
RECEIVE_TIMEOUT_MS = 5000
DIR = "sealpost.directory.v1.DirectoryService/"


class StepFailure(Exception):
    pass


def step_kind(step):
    for k in STEP_KINDS:
        if k in step:
            return k
    raise CaseError("step has no known kind: %r" % (step,))


def glob_match(glob, text):
    out = ""
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
        i += 1
    return re.match("^" + out + "$", text) is not None


def load_known_failing(path):
    rules = []
    if not path:
        return rules
    for raw in open(path, encoding="utf-8"):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = re.split(r"\s+@\s+", line)
        rules.append((parts[0].strip(), parts[1].strip() if len(parts) > 1 else None))
    return rules


def is_known_failing(rules, name, target):
    return any(glob_match(p, name) and (t is None or glob_match(t, target)) for p, t in rules)


def device(account_id, device_id, identity):
    return {"kind": "device", "account_id": account_id, "device_id": device_id,
            "address": {"account_id": account_id, "device_id": device_id}, "identity": identity}


class CaseExecution:
    def __init__(self, stack, naming, DeviceList):
        self.stack = stack
        self.vars = {}
        self.streams = {}
        self.step_no = 0
        self.DeviceList = DeviceList
        self.ev = Evaluator(self.vars, naming, DeviceList)
        self.naming = naming

    def run(self, steps):
        try:
            self.steps(steps)
            return None
        except StepFailure as e:
            return {"message": str(e), "step": self.step_no}
        except CaseError as e:
            return {"message": "case error: %s" % e, "step": self.step_no}
        except Exception as e:  # a bug in the runner or the stubs: report, do not crash the run
            return {"message": "runner error: %s: %s" % (type(e).__name__, e), "step": self.step_no}
        finally:
            for s in self.streams.values():
                s.close()

    def steps(self, steps):
        for s in steps:
            self.step_no += 1
            self.step(s)

    def headers(self, as_, extra):
        h = {}
        if as_ is not None and as_ != "none":
            ctx = self.vars.get(as_) if isinstance(as_, str) and as_ in self.vars else self.ev.eval(as_)
            if not isinstance(ctx, dict) or not isinstance(ctx.get("token"), str):
                raise CaseError("as: %r is not an authenticated device" % (as_,))
            h["authorization"] = "Bearer " + ctx["token"]
        for k, v in (self.ev.eval(extra or {}) or {}).items():
            h[k.lower()] = str(v)
        return h

    def unary(self, path, request, as_=None, headers=None, timeout_ms=None):
        if not self.stack.has_method(path):
            raise CaseError("method %s is not in the schema" % path)
        wire = to_wire(self.ev.eval(request or {}))
        try:
            return self.stack.unary(path, wire, self.headers(as_, headers), timeout_ms or CALL_TIMEOUT_MS)
        except (CaseError, StepFailure):
            raise
        except Exception as e:
            raise CaseError("%s: the request could not be sent: %s" % (path, e))

    def check(self, res, expect, what):
        expect = expect or {}
        codes = expect.get("code", "OK")
        codes = [str(c).upper() for c in (codes if isinstance(codes, list) else [codes])]
        detail = (": " + res["message"]) if res.get("message") else ""
        if res["code"] not in codes:
            raise StepFailure("%s: expected %s, got %s%s" % (what, " or ".join(codes), res["code"], detail))
        if expect.get("message") and res["code"] != "OK" and not re.search(expect["message"], res["message"], re.I):
            raise StepFailure("%s: error message %r does not match /%s/" % (what, res["message"], expect["message"]))
        if expect.get("response") is not None and res["code"] == "OK":
            diffs = match(self.ev.eval(expect["response"]), res["response"])
            if diffs:
                raise StepFailure("%s: %s" % (what, "; ".join(diffs)))

    def bind(self, res, bind):
        if not bind:
            return
        if res["code"] != "OK":
            raise CaseError("bind: the call failed, nothing to bind")
        for name, path in bind.items():
            v = res["response"] if path == "." else get_path(res["response"], path)
            if v is None:
                raise StepFailure("bind %s: response has no %s" % (name, path))
            self.vars[name] = v

    def stream(self, name):
        if name not in self.streams:
            raise CaseError('no open stream "%s"' % name)
        return self.streams[name]

    def step(self, s):
        kind = step_kind(s)
        if kind == "call":
            res = self.unary(s["call"], s.get("request"), s.get("as"), s.get("headers"), s.get("timeout_ms"))
            self.check(res, s.get("expect"), s["call"])
            self.bind(res, s.get("bind"))
        elif kind == "open":
            name = s["open"]
            if name in self.streams:
                self.streams[name].close()
            if not self.stack.has_method(s["call"]):
                raise CaseError("method %s is not in the schema" % s["call"])
            headers = self.headers(s.get("as"), s.get("headers"))
            if self.stack.is_bidi(s["call"]):
                # Bidirectional: opened empty; `send` steps write to it.
                self.streams[name] = self.stack.bidi_stream(s["call"], headers)
            else:
                wire = to_wire(self.ev.eval(s.get("request") or {}))
                self.streams[name] = self.stack.server_stream(s["call"], wire, headers)
        elif kind == "send":
            st = self.stream(s["send"])
            if not hasattr(st, "send"):
                raise CaseError('stream "%s" is not bidirectional' % s["send"])
            if s.get("close_send"):
                st.close_send()
            else:
                st.send(to_wire(self.ev.eval(s.get("request") or {})))
        elif kind == "receive":
            name = s["receive"]
            t = s.get("timeout_ms", RECEIVE_TIMEOUT_MS)
            ev = self.stream(name).next(t)
            if ev is None:
                raise StepFailure("stream %s: no message within %s ms" % (name, t))
            if ev["kind"] == "end":
                raise StepFailure("stream %s: ended (%s%s) while a message was expected" % (name, ev["code"], ": " + ev["message"] if ev["message"] else ""))
            diffs = match(self.ev.eval((s.get("expect") or {}).get("response")), ev["response"])
            if diffs:
                raise StepFailure("stream %s: %s" % (name, "; ".join(diffs)))
            self.bind({"code": "OK", "response": ev["response"]}, s.get("bind"))
        elif kind == "quiet":
            ev = self.stream(s["quiet"]).next(s["ms"])
            if ev is not None and ev["kind"] == "message":
                raise StepFailure("stream %s: expected nothing for %s ms, got %s" % (s["quiet"], s["ms"], str(ev["response"])[:200]))
            if ev is not None:
                raise StepFailure("stream %s: expected it to stay open, it ended (%s: %s)" % (s["quiet"], ev["code"], ev["message"]))
        elif kind == "end":
            name = s["end"]
            t = s.get("timeout_ms", RECEIVE_TIMEOUT_MS)
            ev = self.stream(name).next(t)
            if ev is None:
                raise StepFailure("stream %s: did not end within %s ms" % (name, t))
            if ev["kind"] == "message":
                raise StepFailure("stream %s: expected the end, got a message %s" % (name, str(ev["response"])[:200]))
            self.check({"code": ev["code"], "message": ev["message"]}, s.get("expect"), "stream %s end" % name)
        elif kind == "close":
            self.stream(s["close"]).close()
            del self.streams[s["close"]]
        elif kind == "let":
            for k, v in s["let"].items():
                self.vars[k] = self.ev.eval(v)
        elif kind == "identity":
            self.vars[s["identity"]] = fx.new_identity(s.get("one_time_prekeys", 5))
        elif kind == "create_account":
            self.create_account(s["create_account"])
        elif kind == "authenticate":
            self.authenticate(s["authenticate"])
        elif kind == "link_device":
            self.link_device(s["link_device"])
        elif kind == "repeat":
            r = s["repeat"]
            for i in range(int(self.ev.eval(r["times"]))):
                self.vars[r.get("var", "i")] = i
                self.steps(r["steps"])
        elif kind == "sleep":
            time.sleep(s["sleep"] / 1000.0)
        elif kind == "verify_sender_certificate":
            self.verify_sender_certificate(s["verify_sender_certificate"])
        elif kind == "verify_log_inclusion":
            v = s["verify_log_inclusion"]
            self.verify_log_inclusion(self.ev.eval(v["response"]) or {}, str(self.ev.eval(v["account_id"])), self.ev.eval(v["log_key"]))
        elif kind == "verify_log_consistency":
            v = s["verify_log_consistency"]
            key = self.ev.eval(v["log_key"])
            first, second = self.ev.eval(v["first"]) or {}, self.ev.eval(v["second"]) or {}
            check_tree_head(first, key)
            check_tree_head(second, key)
            proof = [as_bytes(x, "proof[]") for x in (self.ev.eval(v["proof"]) or [])]
            if not log_consistent(int(first.get("tree_size", 0)), int(second.get("tree_size", 0)), as_bytes(first.get("root_hash", ""), "root_hash"), as_bytes(second.get("root_hash", ""), "root_hash"), proof):
                raise StepFailure("key transparency: the first head is not proven a prefix of the second")

    def verify_log_inclusion(self, res, account_id, log_key):
        """A client's check of GetDeviceList's LogInclusion (PROTOCOL.md, "Key transparency")."""
        kt = res.get("transparency") or {}
        head = kt.get("tree_head")
        if not head or not (res.get("device_list") or {}).get("device_list"):
            raise StepFailure("key transparency: the answer has no device list or no tree head")
        check_tree_head(head, log_key)
        device_list = as_bytes(res["device_list"]["device_list"], "device_list")
        DeviceList = self.stack.modules["sealpost/directory/v1/device_list.proto"][0].DeviceList
        parsed = DeviceList()
        parsed.ParseFromString(device_list)
        index = hashlib.sha256(b"sealpost.kt.index.v1" + account_id.encode()).digest()
        leaf = index + parsed.version.to_bytes(8, "big") + hashlib.sha256(device_list).digest()
        path = [as_bytes(x, "audit_path[]") for x in kt.get("audit_path", [])]
        if not log_includes(hashlib.sha256(b"\x00" + leaf).digest(), int(kt.get("leaf_index", 0)), int(head.get("tree_size", 0)), path, as_bytes(head.get("root_hash", ""), "root_hash")):
            raise StepFailure("key transparency: version %d of %s is not in the log" % (parsed.version, account_id))

    def verify_sender_certificate(self, v):
        """A recipient's check of a sender certificate (PROTOCOL.md, "Sender certificates")."""
        from .curves import ed25519_verify

        ident = self.identity(v["identity"])
        cert = self.ev.eval(v["certificate"]) or {}
        keys = self.ev.eval(v["keys"]) or []
        body = as_bytes(cert.get("body", ""), "certificate.body")
        sig = as_bytes(cert.get("signature", ""), "certificate.signature")
        Body = self.stack.modules["sealpost/directory/v1/sender_certificate.proto"][0].SenderCertificate.Body
        parsed = Body()
        try:
            parsed.ParseFromString(body)
        except Exception:
            raise StepFailure("sender certificate: the body does not parse")
        key = next((k for k in keys if int(k.get("key_id", 0)) == parsed.key_id), None)
        if key is None:
            raise StepFailure("sender certificate: key_id %d is not among the published keys" % parsed.key_id)
        if not ed25519_verify(as_bytes(key["public_key"], "keys[].public_key"), b"sealpost.sender-certificate.v1" + body, sig):
            raise StepFailure("sender certificate: the signature does not verify over label || body")
        if parsed.expires_at_ms <= int(time.time() * 1000):
            raise StepFailure("sender certificate: expired")
        want = (str(self.ev.eval(v["account_id"])), int(self.ev.eval(v["device_id"])))
        if (parsed.account_id, parsed.device_id) != want:
            raise StepFailure("sender certificate: names %s/%d, not %s/%d" % (parsed.account_id, parsed.device_id, want[0], want[1]))
        if bytes(parsed.identity_key) != bytes(ident["signing_key"]):
            raise StepFailure("sender certificate: its identity key is not the device's")

    def must(self, path, request, as_, what):
        res = self.unary(path, request, as_)
        if res["code"] != "OK":
            raise StepFailure("%s: %s failed with %s: %s" % (what, path, res["code"], res.get("message", "")))
        return res["response"]

    def identity(self, name):
        if name and name in self.vars:
            return lookup(self.vars, name)
        ident = fx.new_identity()
        if name:
            self.vars[name] = ident
        return ident

    def create_account(self, a):
        ident = self.identity(a.get("identity"))
        lst = fx.device_list_change(self.DeviceList, account_id=self.naming(a["account"]), add=[{"identity": ident, "name": a.get("name") or "phone"}])
        res = self.must(DIR + "CreateAccount", {"device_list": lst["signed"], "signed_prekey": ident["signed_prekey"],
                                                "kem_prekey": ident["kem_prekey"], "one_time_prekeys": ident["one_time_prekeys"]}, "none", "create_account")
        did = int((res.get("device") or {}).get("device_id") or lst["added_device_id"])
        self.vars[a["account"]] = lst
        self.vars[a["as"]] = device(lst["account_id"], did, ident)
        self.authenticate(a["as"])

    def authenticate(self, name):
        ctx = lookup(self.vars, name)
        ch = self.must(DIR + "GetAuthChallenge", {"device": ctx["address"]}, "none", "authenticate " + name)
        nonce = as_bytes(ch["nonce"], "nonce")
        sig = fx.auth_signature(ctx["identity"], ctx["account_id"], ctx["device_id"], nonce)
        res = self.must(DIR + "Authenticate", {"device": ctx["address"], "nonce": to_b64(nonce), "signature": sig}, "none", "authenticate " + name)
        self.vars[name] = dict(ctx, token=str(res["token"]))

    def link_device(self, a):
        frm = lookup(self.vars, a["account"])
        signer = lookup(self.vars, a["signer"])
        ident = self.identity(a.get("identity"))
        nxt = fx.device_list_change(self.DeviceList, frm=frm, add=[{"identity": ident, "name": a.get("name") or "laptop"}],
                                    signer=signer["identity"], signer_device_id=signer["device_id"])
        res = self.must(DIR + "LinkDevice", {"device_list": nxt["signed"]}, a["signer"], "link_device")
        did = int((res.get("device") or {}).get("device_id") or nxt["added_device_id"])
        self.vars[a["account"]] = nxt
        self.vars[a["as"]] = device(nxt["account_id"], did, ident)
        self.authenticate(a["as"])
        self.must(DIR + "UploadPrekeys", {"signed_prekey": ident["signed_prekey"], "kem_prekey": ident["kem_prekey"],
                                          "one_time_prekeys": ident["one_time_prekeys"]}, a["as"], "link_device (upload prekeys)")


def run_cases(stack, cases, DeviceList, known_failing=(), on_result=None):
    run_id = os.urandom(4).hex()
    results = []
    for n, c in enumerate(cases, 1):
        naming = (lambda n: lambda name: ("py%s%s-%s" % (run_id, _b36(n), name)).lower()[:64])(n)
        started = time.time()
        outcome = CaseExecution(stack, naming, DeviceList).run(c["steps"])
        known = is_known_failing(known_failing, c["name"], stack.target)
        failed = outcome is not None
        status = ("known-fail" if known else "fail") if failed else ("unexpected-pass" if known else "pass")
        r = {"name": c["name"], "target": stack.target, "status": status, "durationMs": int((time.time() - started) * 1000),
             "checks": c.get("checks", ""), "file": c.get("file")}
        if outcome:
            r.update(outcome)
        if status == "unexpected-pass":
            r["message"] = "listed in known-failing but passes: remove it from the list"
        results.append(r)
        if on_result:
            on_result(r)
    return results


def _b36(n):
    s = ""
    while True:
        n, r = divmod(n, 36)
        s = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + s
        if n == 0:
            return s


def _node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def check_tree_head(head, log_key):
    """The head's signature by the log key over the label, size, root and time."""
    from .curves import ed25519_verify

    signed = b"sealpost.kt.tree-head.v1" + int(head.get("tree_size", 0)).to_bytes(8, "big") + as_bytes(head.get("root_hash", ""), "root_hash") + int(head.get("timestamp_ms", 0)).to_bytes(8, "big")
    if not ed25519_verify(as_bytes(log_key, "log_key"), signed, as_bytes(head.get("signature", ""), "signature")):
        raise StepFailure("key transparency: the tree head's signature does not verify with the log key")


def log_includes(leaf_hash, index, size, path, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def log_consistent(first, second, first_root, second_root, proof):
    """RFC 9162 section 2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second or not proof:
        return first == 0 and not proof
    path = [first_root] + proof if first & (first - 1) == 0 else proof
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0

