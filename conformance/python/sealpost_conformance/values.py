"""The value language of the cases (see conformance/src/runner/values.ts, which this mirrors):
proto3 JSON plus ${var.path} references and single-key $function objects."""
import base64
import hashlib
import re

from . import fixtures as fx


class CaseError(Exception):
    pass


MATCHERS = {"$absent", "$present", "$any", "$regex", "$gt", "$gte", "$lt", "$lte", "$len", "$bytes_len", "$ne", "$one_of", "$contains"}
_WHOLE = re.compile(r"^\$\{([^}]+)\}$")
_PART = re.compile(r"\$\{([^}]+)\}")
_PATH = re.compile(r"[^.\[\]]+")


def from_b64(s):
    s = s.replace("-", "+").replace("_", "/")
    return base64.b64decode(s + "=" * (-len(s) % 4))


def to_b64(b):
    return base64.b64encode(b).decode()


def as_bytes(v, what):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    if isinstance(v, str):
        return from_b64(v)
    raise CaseError("%s: expected bytes or a base64 string, got %r" % (what, v))


def num(v, what):
    if isinstance(v, bool):
        raise CaseError("%s: expected a number, got %r" % (what, v))
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str) and re.match(r"^-?\d+$", v):
        return int(v)
    raise CaseError("%s: expected a number, got %r" % (what, v))


def _step(v, p):
    if v is None:
        return None
    if isinstance(v, list):
        i = int(p)
        return v[i] if 0 <= i < len(v) else None
    if isinstance(v, dict):
        return v.get(p)
    return None


def lookup(vars, path):
    parts = _PATH.findall(path)
    if not parts:
        raise CaseError("empty variable reference")
    if parts[0] not in vars:
        raise CaseError('unknown variable "%s"' % parts[0])
    v = vars[parts[0]]
    for p in parts[1:]:
        if v is None:
            raise CaseError('${%s}: "%s" of nothing' % (path, p))
        v = _step(v, p)
    if v is None:
        raise CaseError("${%s} is not set" % path)
    return v


def get_path(value, path):
    v = value
    for p in _PATH.findall(path):
        v = _step(v, p)
    return v


def _stringify(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class Evaluator:
    def __init__(self, vars, naming, DeviceList):
        self.vars = vars
        self.naming = naming
        self.DeviceList = DeviceList

    def identity(self, v, what):
        x = self.vars.get(v) if isinstance(v, str) and v in self.vars else v
        if getattr(x, "kind", None) != "identity":
            raise CaseError("%s: not an identity: %r" % (what, v))
        return x

    def account(self, v, what):
        x = self.vars.get(v) if isinstance(v, str) and v in self.vars else v
        if getattr(x, "kind", None) != "account":
            raise CaseError("%s: not an account context: %r" % (what, v))
        return x

    def device_list(self, frm, a):
        add = a.get("add")
        if add is None:
            add = [{"identity": a["identity"], "name": a.get("name"), "device_id": a.get("device_id")}] if a.get("identity") else []
        opt = lambda k: None if a.get(k) is None else num(a[k], k)
        return fx.device_list_change(
            self.DeviceList,
            frm=frm,
            account_id=None if a.get("account_id") is None else str(a["account_id"]),
            add=[{"identity": self.identity(x["identity"], "add.identity"), "name": x.get("name"),
                  "device_id": None if x.get("device_id") is None else num(x["device_id"], "device_id")} for x in add],
            remove=[num(x, "remove") for x in (a.get("remove") or [])],
            signer=None if a.get("signer") is None else self.identity(a["signer"], "signer"),
            signer_device_id=opt("signer_device_id"),
            version=opt("version"),
            previous_hash=None if a.get("previous_hash") is None else as_bytes(a["previous_hash"], "previous_hash"),
            next_device_id=opt("next_device_id"),
            bad_signature=a.get("bad_signature") is True,
        )

    def call(self, name, a):
        if name == "$random_bytes":
            return fx.random_bytes(num(a, name))
        if name == "$bytes":
            return bytes([a.get("fill", 0)]) * num(a["length"], "$bytes.length")
        if name == "$hex":
            return bytes.fromhex(str(a))
        if name == "$base64":
            return from_b64(str(a))
        if name == "$utf8":
            return _stringify(a).encode()
        if name == "$concat":
            return b"".join(as_bytes(x, "$concat") for x in a)
        if name == "$u8":
            return bytes([num(a, name)])
        if name == "$u32be":
            return fx.u32be(num(a, name))
        if name == "$sha256":
            return hashlib.sha256(as_bytes(a, name)).digest()
        if name == "$repeat_string":
            return str(a["text"]) * num(a["count"], "count")
        if name == "$range":
            start = num(a.get("start", 1), "start")
            return list(range(start, start + num(a["count"], "count")))
        if name == "$add":
            return sum(num(x, "$add") for x in a)
        if name == "$mul":
            out = 1
            for x in a:
                out *= num(x, "$mul")
            return out
        if name == "$account_id":
            return self.naming(str(a))
        if name == "$tamper":
            if isinstance(a, str):
                i = len(a) >> 1
                return a[:i] + ("B" if a[i] == "A" else "A") + a[i + 1:]
            return fx.flip_byte(as_bytes(a, name))
        if name == "$sign":
            return fx.sign(self.identity(a["identity"], "$sign.identity"), as_bytes(a["message"], "$sign.message"))
        if name == "$auth_signature":
            return fx.auth_signature(self.identity(a["identity"], name), str(a["account_id"]), num(a["device_id"], "device_id"), as_bytes(a["nonce"], "nonce"))
        if name == "$signed_prekey":
            return fx.signed_prekey(self.identity(a["identity"], name), num(a["key_id"], "key_id"))
        if name == "$kem_prekey":
            return fx.kem_prekey(self.identity(a["identity"], name), num(a["key_id"], "key_id"))
        if name == "$one_time_prekeys":
            return fx.one_time_prekeys(num(a["count"], "count"), num(a.get("start_id", 1), "start_id"))
        if name == "$first_device_list":
            return self.device_list(None, a)
        if name == "$next_device_list":
            return self.device_list(self.account(a["from"], "$next_device_list.from"), a)
        raise CaseError("unknown function " + name)

    def eval(self, value):
        if isinstance(value, str):
            m = _WHOLE.match(value)
            if m:
                return lookup(self.vars, m.group(1).strip())
            return _PART.sub(lambda m: _stringify(lookup(self.vars, m.group(1).strip())), value)
        if isinstance(value, list):
            return [self.eval(v) for v in value]
        if isinstance(value, dict) and getattr(value, "kind", None) is None:
            if len(value) == 1:
                (k, v), = value.items()
                if isinstance(k, str) and k.startswith("$"):
                    arg = self.eval(v)
                    if k in MATCHERS:
                        return {k: arg}
                    return self.call(k, arg)
            return {k: self.eval(v) for k, v in value.items()}
        return value


def to_wire(value, path="request"):
    if isinstance(value, (bytes, bytearray)):
        return to_b64(bytes(value))
    if isinstance(value, list):
        return [to_wire(v, "%s[%d]" % (path, i)) for i, v in enumerate(value)]
    if isinstance(value, dict):
        kind = getattr(value, "kind", None)
        if kind in ("identity", "account"):
            raise CaseError("%s: an %s context cannot go on the wire" % (path, kind))
        return {k: to_wire(v, path + "." + k) for k, v in value.items() if v is not None}
    return value
