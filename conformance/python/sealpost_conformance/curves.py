"""Ed25519 (RFC 8032 section 6 reference algorithm) and X25519 (RFC 7748) in pure Python.

Slow (milliseconds per operation) but dependency-free: the Python runner only needs a few
hundred signatures per run, and Debian's python3 ships no Ed25519 in the standard library.
"""
import hashlib

p = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
d = -121665 * pow(121666, p - 2, p) % p
_sqrt_m1 = pow(2, (p - 1) // 4, p)


def _recover_x(y, sign):
    x2 = (y * y - 1) * pow(d * y * y + 1, p - 2, p)
    if x2 == 0:
        return 0
    x = pow(x2, (p + 3) // 8, p)
    if (x * x - x2) % p != 0:
        x = x * _sqrt_m1 % p
    if (x & 1) != sign:
        x = p - x
    return x


_gy = 4 * pow(5, p - 2, p) % p
_gx = _recover_x(_gy, 0)
_G = (_gx, _gy, 1, _gx * _gy % p)


def _add(P, Q):
    A = (P[1] - P[0]) * (Q[1] - Q[0]) % p
    B = (P[1] + P[0]) * (Q[1] + Q[0]) % p
    C = 2 * P[3] * Q[3] * d % p
    D = 2 * P[2] * Q[2] % p
    E, F, G, H = B - A, D - C, D + C, B + A
    return (E * F % p, G * H % p, F * G % p, E * H % p)


def _mul(s, P):
    Q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            Q = _add(Q, P)
        P = _add(P, P)
        s >>= 1
    return Q


def _compress(P):
    zinv = pow(P[2], p - 2, p)
    x = P[0] * zinv % p
    y = P[1] * zinv % p
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def _expand(seed):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def _modl(b):
    return int.from_bytes(hashlib.sha512(b).digest(), "little") % L


def ed25519_public_key(seed):
    a, _ = _expand(seed)
    return _compress(_mul(a, _G))


def ed25519_sign(seed, msg):
    a, prefix = _expand(seed)
    A = _compress(_mul(a, _G))
    r = _modl(prefix + msg)
    R = _compress(_mul(r, _G))
    s = (r + _modl(R + A + msg) * a) % L
    return R + int.to_bytes(s, 32, "little")


def _decompress(b):
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= p:
        return None
    x = _recover_x(y, sign)
    if (x * x * -1 + y * y - 1 - d * x * x * y * y) % p != 0:
        return None
    return (x, y, 1, x * y % p)


def ed25519_verify(public_key, msg, sig):
    """The protocol's rule (docs/PROTOCOL.md, Notation): S < L, a canonical key not of small
    order, and the cofactorless equation with R compared as bytes: encode([S]B - [k]A) == R."""
    if len(public_key) != 32 or len(sig) != 64:
        return False
    A = _decompress(public_key)
    s = int.from_bytes(sig[32:], "little")
    if A is None or s >= L or _compress(A) != public_key:
        return False
    if _compress(_mul(8, A)) == _compress(_mul(0, A)):  # [8]A is the identity: small order
        return False
    k = _modl(sig[:32] + public_key + msg)
    kA = _mul(k, A)
    minus_kA = ((-kA[0]) % p, kA[1], kA[2], (-kA[3]) % p)
    return _compress(_add(_mul(s, _G), minus_kA)) == sig[:32]


def x25519(k, u):
    kb = bytearray(k)
    kb[0] &= 248
    kb[31] &= 127
    kb[31] |= 64
    n = int.from_bytes(kb, "little")
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        kt = (n >> t) & 1
        swap ^= kt
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = kt
        A = x2 + z2
        AA = A * A % p
        B = x2 - z2
        BB = B * B % p
        E = AA - BB
        C = x3 + z3
        D = x3 - z3
        DA = D * A % p
        CB = C * B % p
        x3 = (DA + CB) ** 2 % p
        z3 = x1 * (DA - CB) ** 2 % p
        x2 = AA * BB % p
        z2 = E * (AA + 121665 * E) % p
    if swap:
        x2, x3, z2, z3 = x3, x2, z3, z2
    return (x2 * pow(z2, p - 2, p) % p).to_bytes(32, "little")


def x25519_public_key(k):
    return x25519(k, (9).to_bytes(32, "little"))
