"""Partial matching of responses; the same rules as conformance/src/runner/matcher.ts."""
import json
import re

from .values import MATCHERS, from_b64, to_b64


def _numeric(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str) and re.match(r"^-?\d+(\.\d+)?$", v):
        return float(v) if "." in v else int(v)
    return None


def _is_default(v):
    if isinstance(v, bool):
        return v is False
    return v in (0, "0", "", b"") or v == []


def _show(v):
    if isinstance(v, (bytes, bytearray)):
        return "bytes(%d) %s" % (len(v), to_b64(bytes(v))[:24])
    try:
        s = json.dumps(v, default=lambda o: to_b64(o) if isinstance(o, (bytes, bytearray)) else str(o))
    except Exception:
        s = repr(v)
    return s if len(s) <= 160 else s[:157] + "..."


def match(expected, actual, path="response"):
    if expected is None:
        return []
    if isinstance(expected, dict) and len(expected) == 1 and next(iter(expected)) in MATCHERS:
        (op, arg), = expected.items()
        return _matcher(op, arg, actual, path)
    if actual is None:
        return [] if _is_default(expected) else ["%s: expected %s, got nothing" % (path, _show(expected))]
    if isinstance(expected, (bytes, bytearray)):
        if not isinstance(actual, str):
            return ["%s: expected bytes, got %s" % (path, _show(actual))]
        got = from_b64(actual)
        return [] if got == bytes(expected) else ["%s: expected %s, got %s" % (path, _show(expected), _show(got))]
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return ["%s: expected a list, got %s" % (path, _show(actual))]
        if len(actual) != len(expected):
            return ["%s: expected %d items, got %d: %s" % (path, len(expected), len(actual), _show(actual))]
        out = []
        for i, e in enumerate(expected):
            out += match(e, actual[i], "%s[%d]" % (path, i))
        return out
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return ["%s: expected an object, got %s" % (path, _show(actual))]
        out = []
        for k, e in expected.items():
            out += match(e, actual.get(k), "%s.%s" % (path, k))
        return out
    en, an = _numeric(expected), _numeric(actual)
    if en is not None and an is not None:
        return [] if en == an else ["%s: expected %s, got %s" % (path, _show(expected), _show(actual))]
    return [] if expected == actual else ["%s: expected %s, got %s" % (path, _show(expected), _show(actual))]


def _matcher(op, arg, actual, path):
    if op == "$any":
        return []
    if op == "$absent":
        return [] if actual is None else ["%s: expected absent, got %s" % (path, _show(actual))]
    if op == "$present":
        return ["%s: expected a value, got nothing" % path] if actual is None else []
    if op == "$regex":
        ok = isinstance(actual, str) and re.search(str(arg), actual, re.I)
        return [] if ok else ["%s: expected to match /%s/, got %s" % (path, arg, _show(actual))]
    if op in ("$gt", "$gte", "$lt", "$lte"):
        a, b = _numeric(0 if actual is None else actual), _numeric(arg)
        if a is None or b is None:
            return ["%s: %s needs numbers, got %s and %s" % (path, op, _show(actual), _show(arg))]
        ok = {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]
        return [] if ok else ["%s: expected %s %s, got %s" % (path, op[1:], b, a)]
    if op == "$len":
        n = len(actual) if isinstance(actual, (list, str)) else (0 if actual is None else -1)
        return [] if n == _numeric(arg) else ["%s: expected length %s, got %s" % (path, arg, n)]
    if op == "$bytes_len":
        n = len(from_b64(actual)) if isinstance(actual, str) else (0 if actual is None else -1)
        return [] if n == _numeric(arg) else ["%s: expected %s bytes, got %s" % (path, arg, n)]
    if op == "$ne":
        return [] if match(arg, actual, path) else ["%s: expected anything but %s" % (path, _show(arg))]
    if op == "$one_of":
        return [] if any(not match(e, actual, path) for e in arg) else ["%s: expected one of %s, got %s" % (path, _show(arg), _show(actual))]
    if op == "$contains":
        if not isinstance(actual, list):
            return ["%s: expected a list, got %s" % (path, _show(actual))]
        return ["%s: no item matches %s" % (path, _show(e)) for e in arg if not any(not match(e, a) for a in actual)]
    return ["%s: unknown matcher %s" % (path, op)]
