"""EAX' against the vectors of digest 5.6/5.7, tamper detection and round trips."""

from __future__ import annotations

import pickle

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from c1222.crypto.eax_prime import MAC_SIZE, EaxPrime, dbl
from c1222.errors import ConfigurationError, SecurityError

H = bytes.fromhex
KEY_EX8 = H("01020304050607080102030405060708")

# (name, key, N, P, C, MAC) — digest 5.6 TV1-TV4 and TV5 (Example 8, both messages).
VECTORS = [
    (
        "TV1",
        KEY_EX8,
        "a20c060a607c86f7540116001702a703020104a803020102ac0fa20da00ba109"
        "800102810448e99388be19281781159aa60d060b607c86f75401160017821102"
        "48e99388",
        "54454d500b40000700051a00000200e4",
        "4031cc957d4edf9a357f3db0fa9fe838",
        "6555c029",
    ),
    (
        "TV2",
        KEY_EX8,
        "a20c060a607c86f7540116007b02a703020104a803020102ac0fa20da00ba109"
        "800102810448f3d2f8be19281781159aa60d060b607c86f7540116007b821102"
        "48f3d2f8",
        "54454d500b40000700051a00000200e4",
        "8d2fbb7a0a8c4d40edaa10a46431c9b8",
        "fec6d9e8",
    ),
    (
        "TV3",
        H("102030405060708090a0b0c0d0e0f000"),
        "a20e060c6086480186fc2f811caa4e01a806020439a00ebbac0fa20da00ba109"
        "80010081044bcee2c3be252823812188a60a06082b06010401828563004bcee2"
        "c3",
        "17513030303030303030303030303030303030303030000003300001",
        "9cf32c7ec24c250be7b0749feee71a220d0eee976ec23dbf0caa08ea",
        "00543e66",
    ),
    (
        "TV4",
        H("6624c7e23034e4036fe5cb3a8b5dab44"),
        "a211060f2b060104018285638e7f85f1c24e01a80602042bc81aa1ac0fa20da0"
        "0ba10980010081044b97d2ccbe392837813588a60906072b060104828563004b"
        "97d2cc",
        "1751303030303030303030303030303030303030303000000330000103300078"
        "033000790330007a0330007b0330007d",
        "beb0989fadb020eb72ba46353cc0a2ac2a007a101afebaf9680d3b9659f99112"
        "1b865f254f6ac92cdd213d31e3c4d2ca",
        "e6f89b6d",
    ),
    (
        "TV5-message1",
        KEY_EX8,
        "a20d060b607c86f7540116007bc175"
        "a803020103"
        "ac0fa20da00ba109800102810448f3d061"
        "be2a2828812688"
        "a60c060a607c86f7540116007b04"
        "02"
        "48f3d061",
        "175150415353574f52442020202020202020202020200002"
        "083f0001000010" "0010",
        "41d10cda76206811b36f781489a11997773e117cb07aa3aa40374a7107c50da7f7",
        "99c5d4e8",
    ),
    (
        "TV5-message2",
        KEY_EX8,
        "a20c060a607c86f7540116007b04a403020103a803020103"
        "ac0fa20da00ba109800102810448f3d060be1e281c811a88"
        "a60d060b607c86f7540116007bc175"
        "02"
        "48f3d060",
        "140000104d414e55464143545552455220534e2092",
        "4baee4349631ab5e56a0e6e0e90dfad558591ee4ea",
        "334cb268",
    ),
]
IDS = [v[0] for v in VECTORS]

# Example 8 APDUs as captured (digest 5.6 TV5): N and C above must be cut from these.
EX8_APDU_1 = H(
    "604fa20580037bc175a60480027b04a803020103ac0fa20da00ba109800102810448f3d061"
    "be2a282881268841d10cda76206811b36f781489a11997773e117cb07aa3aa40374a7107c5"
    "0da7f799c5d4e8"
)
EX8_APDU_2 = H(
    "6048a20480027b04a403020103a60580037bc175a803020103ac0fa20da00ba109800102810448f3d060"
    "be1e281c811a884baee4349631ab5e56a0e6e0e90dfad558591ee4ea334cb268"
)

# Cross-check X0 (digest 5.7): security mode 1, MAC over N || 01 20.
X0_N = H(
    "a20d060b607c86f7540116007bc175a803020107ac0fa20da00ba10980010281045f000001"
    "be0b2809810784a60c060a607c86f7540116007b04025f000001"
)
X0_BODY = H("0120")
X0_MAC = H("a7d6786e")
X0_APDU = H(
    "6030a20580037bc175a60480027b04a803020107ac0fa20da00ba10980010281045f000001"
    "be0b28098107840120a7d6786e"
)


def _aes_block(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize(("name", "key", "n", "p", "c", "mac"), VECTORS, ids=IDS)
def test_encrypt_matches_vector(name: str, key: bytes, n: str, p: str, c: str, mac: str) -> None:
    assert EaxPrime(key).encrypt(H(n), H(p)) == (H(c), H(mac))


@pytest.mark.parametrize(("name", "key", "n", "p", "c", "mac"), VECTORS, ids=IDS)
def test_decrypt_matches_vector(name: str, key: bytes, n: str, p: str, c: str, mac: str) -> None:
    assert EaxPrime(key).decrypt(H(n), H(c), H(mac)) == H(p)


def test_example8_vectors_are_cut_from_the_captured_apdus() -> None:
    # The ciphertext and MAC are the tail of the 81 octet string; the BE header in N is
    # the bytes from BE through the control byte as transmitted (digest 5.2 item 8).
    for apdu, (_, _, n, _, c, mac) in ((EX8_APDU_1, VECTORS[4]), (EX8_APDU_2, VECTORS[5])):
        be = apdu.index(H("be"), 2)
        assert apdu[be : be + 7] in H(n)
        assert apdu[be + 7 :] == H(c) + H(mac)


def test_example8_message2_intermediate_values() -> None:
    """Digest 5.6: L, D, Q, N', C' and N' xor C' for Example 8 message 2."""
    _, key, n, _, c, mac = VECTORS[5]
    l_block = _aes_block(key, bytes(16))
    assert l_block == H("c39e93d8ce44bef6aadf2959fd066db8")
    assert dbl(l_block) == H("013d27b19d897ced55bf53b2fa0dda70")
    assert dbl(dbl(l_block)) == H("027a4e623b13f9daab7ea764f51bb4e1")

    eax = EaxPrime(key)
    assert eax._d == H("013d27b19d897ced55bf53b2fa0dda70")
    assert eax._q == H("027a4e623b13f9daab7ea764f51bb4e1")
    n_prime = eax._cmac(eax._d, H(n))
    c_prime = eax._cmac(eax._q, H(c))
    assert n_prime == H("343323e15984da84937bdd67451f5339")
    assert c_prime == H("f54b286e25a0e2e0297438807653e151")
    combined = bytes(a ^ b for a, b in zip(n_prime, c_prime, strict=True))
    assert combined == H("c1780b8f7c243864ba0fe5e7334cb268")
    assert combined[-MAC_SIZE:] == H(mac)


def test_dbl_is_little_endian() -> None:
    # Carry from byte i's bit 7 into byte i+1's bit 0; overflow of byte 15 folds 0x87 into byte 0.
    assert dbl(bytes([0x80]) + bytes(15)) == bytes([0x00, 0x01]) + bytes(14)
    assert dbl(bytes(15) + bytes([0x80])) == bytes([0x87]) + bytes(15)
    # The big-endian (RFC 4493) doubling of Example 8's L would start with 87 (digest 5.6).
    assert dbl(H("c39e93d8ce44bef6aadf2959fd066db8"))[0] != 0x87


def test_counter_masking_is_exercised() -> None:
    """TV1, TV2 and TV4 have the top bit of N'[12] or N'[14] set (digest 5.6)."""
    for index in (0, 1, 3):
        _, key, n, _, _, _ = VECTORS[index]
        eax = EaxPrime(key)
        n_prime = eax._cmac(eax._d, H(n))
        assert n_prime[12] & 0x80 or n_prime[14] & 0x80


def test_mode1_cross_check_x0() -> None:
    eax = EaxPrime(KEY_EX8)
    assert eax.authenticate(X0_N, X0_BODY) == X0_MAC
    assert eax.authenticate(X0_N + X0_BODY) == X0_MAC
    eax.verify(X0_N, X0_BODY, X0_MAC)
    # The MAC and the body are the last bytes of the captured APDU.
    assert X0_APDU.endswith(X0_BODY + X0_MAC)
    # Mode 1 is EAX' with an empty plaintext over N || P (digest 5.2).
    assert eax.encrypt(X0_N + X0_BODY, b"") == (b"", X0_MAC)


def test_empty_plaintext_mac_is_last_bytes_of_n_prime() -> None:
    eax = EaxPrime(KEY_EX8)
    n = H(VECTORS[5][2])
    ciphertext, mac = eax.encrypt(n, b"")
    assert ciphertext == b""
    assert mac == eax._cmac(eax._d, n)[-MAC_SIZE:]
    assert eax.decrypt(n, b"", mac) == b""
    with pytest.raises(SecurityError):
        eax.decrypt(n, b"", _flip(mac, 0))
    with pytest.raises(SecurityError):
        eax.decrypt(_flip(n, 5), b"", mac)


@pytest.mark.parametrize("index", [1, 5], ids=["TV2", "TV5-message2"])
def test_flipping_any_bit_fails(index: int) -> None:
    """Exhaustive single-bit tamper of N, C and MAC (digest 5.3, Decrypt/verify)."""
    _, key, n_hex, _, c_hex, mac_hex = VECTORS[index]
    eax = EaxPrime(key)
    n, c, mac = H(n_hex), H(c_hex), H(mac_hex)
    for bit in range(len(n) * 8):
        with pytest.raises(SecurityError):
            eax.decrypt(_flip(n, bit), c, mac)
    for bit in range(len(c) * 8):
        with pytest.raises(SecurityError):
            eax.decrypt(n, _flip(c, bit), mac)
    for bit in range(len(mac) * 8):
        with pytest.raises(SecurityError):
            eax.decrypt(n, c, _flip(mac, bit))


def test_flipping_any_bit_fails_mode1() -> None:
    eax = EaxPrime(KEY_EX8)
    for bit in range(len(X0_N) * 8):
        with pytest.raises(SecurityError):
            eax.verify(_flip(X0_N, bit), X0_BODY, X0_MAC)
    for bit in range(len(X0_BODY) * 8):
        with pytest.raises(SecurityError):
            eax.verify(X0_N, _flip(X0_BODY, bit), X0_MAC)
    for bit in range(len(X0_MAC) * 8):
        with pytest.raises(SecurityError):
            eax.verify(X0_N, X0_BODY, _flip(X0_MAC, bit))


def test_truncated_or_extended_input_fails() -> None:
    _, key, n_hex, _, c_hex, mac_hex = VECTORS[5]
    eax = EaxPrime(key)
    n, c, mac = H(n_hex), H(c_hex), H(mac_hex)
    for bad_n, bad_c, bad_mac in (
        (n[:-1], c, mac),
        (n + b"\x00", c, mac),
        (n, c[:-1], mac),
        (n, c + b"\x00", mac),
        (n, c, mac[:-1]),
        (n, c, mac + b"\x00"),
        (n, c, b""),
    ):
        with pytest.raises(SecurityError):
            eax.decrypt(bad_n, bad_c, bad_mac)


def test_security_error_message_is_generic() -> None:
    _, key, n, _, c, mac = VECTORS[5]
    with pytest.raises(SecurityError) as info:
        EaxPrime(key).decrypt(H(n), H(c), _flip(H(mac), 3))
    assert str(info.value) == "security check failed"


def test_wrong_key_fails() -> None:
    _, _, n, _, c, mac = VECTORS[5]
    with pytest.raises(SecurityError):
        EaxPrime(bytes(16)).decrypt(H(n), H(c), H(mac))


@pytest.mark.parametrize("length", [0, 15, 17, 24, 32])
def test_key_must_be_16_bytes(length: int) -> None:
    with pytest.raises(ConfigurationError) as info:
        EaxPrime(bytes(range(length)))
    assert "0102" not in str(info.value)


def test_repr_str_and_pickle_do_not_expose_the_key() -> None:
    key = H("a1b2c3d4e5f60718293a4b5c6d7e8f90")
    eax = EaxPrime(key)
    for text in (repr(eax), str(eax), f"{eax}"):
        assert key.hex() not in text.lower()
        assert "a1b2c3d4" not in text.lower()
    with pytest.raises(TypeError):
        pickle.dumps(eax)


def test_accepts_bytes_like_inputs() -> None:
    _, key, n, p, c, mac = VECTORS[4]
    eax = EaxPrime(bytearray(key))
    assert eax.encrypt(bytearray(H(n)), memoryview(H(p))) == (H(c), H(mac))
    assert eax.decrypt(memoryview(H(n)), bytearray(H(c)), bytearray(H(mac))) == H(p)


_lengths = st.sampled_from([0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 64, 80, 96, 100])
# Any length 0..100, with block-boundary lengths (multiples of 16 and their neighbours) boosted.
_texts = st.one_of(
    st.binary(min_size=0, max_size=100),
    _lengths.flatmap(lambda n: st.binary(min_size=n, max_size=n)),
)


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=16),
    cleartext=_texts,
    plaintext=_texts,
)
def test_round_trip(key: bytes, cleartext: bytes, plaintext: bytes) -> None:
    eax = EaxPrime(key)
    ciphertext, mac = eax.encrypt(cleartext, plaintext)
    assert len(ciphertext) == len(plaintext)
    assert len(mac) == MAC_SIZE
    assert eax.decrypt(cleartext, ciphertext, mac) == plaintext
    mac1 = eax.authenticate(cleartext, plaintext)
    eax.verify(cleartext, plaintext, mac1)


def _reference(key: bytes, cleartext: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """Block-by-block EAX' as written out in digest 5.3/5.4, as an independent oracle."""

    def aes(block: bytes) -> bytes:
        return _aes_block(key, block)

    def xor(a: bytes, b: bytes) -> bytes:
        return bytes(x ^ y for x, y in zip(a, b))

    d = dbl(aes(bytes(16)))
    q = dbl(d)

    def cmac(start: bytes, data: bytes) -> bytes:
        if data and len(data) % 16 == 0:
            msg = bytearray(data)
            msg[-16:] = xor(msg[-16:], d)
        else:
            msg = bytearray(data) + b"\x80"
            msg += bytes(-len(msg) % 16)
            msg[-16:] = xor(msg[-16:], q)
        x = start
        for i in range(0, len(msg), 16):
            x = aes(xor(x, bytes(msg[i : i + 16])))
        return x

    n_prime = cmac(d, cleartext)
    if not plaintext:
        return b"", n_prime[12:]
    counter = bytearray(n_prime)
    counter[12] &= 0x7F
    counter[14] &= 0x7F
    value = int.from_bytes(counter, "big")
    out = bytearray()
    for i in range(0, len(plaintext), 16):
        stream = aes((value % (1 << 128)).to_bytes(16, "big"))
        out += xor(plaintext[i : i + 16], stream)
        value += 1
    return bytes(out), xor(n_prime, cmac(q, bytes(out)))[12:]


@settings(max_examples=100, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=16),
    cleartext=st.binary(min_size=0, max_size=100),
    plaintext=st.binary(min_size=0, max_size=100),
)
def test_matches_block_by_block_reference(key: bytes, cleartext: bytes, plaintext: bytes) -> None:
    assert EaxPrime(key).encrypt(cleartext, plaintext) == _reference(key, cleartext, plaintext)


@settings(max_examples=100, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=16),
    cleartext=st.binary(min_size=1, max_size=40),
    plaintext=st.binary(min_size=0, max_size=40),
    data=st.data(),
)
def test_random_single_bit_tamper_fails(
    key: bytes, cleartext: bytes, plaintext: bytes, data: st.DataObject
) -> None:
    eax = EaxPrime(key)
    ciphertext, mac = eax.encrypt(cleartext, plaintext)
    parts = [cleartext, ciphertext, mac]
    which = data.draw(st.sampled_from([i for i, part in enumerate(parts) if part]))
    bit = data.draw(st.integers(0, len(parts[which]) * 8 - 1))
    parts[which] = _flip(parts[which], bit)
    with pytest.raises(SecurityError):
        eax.decrypt(*parts)


# --------------------------------------------------------------------------- kept contexts


def _reference_cmac(key: bytes, start: bytes, data: bytes, d: bytes, q: bytes) -> bytes:
    """CMAC' the plain way (a fresh CBC context with IV = start), to check the kept one."""
    n = len(data)
    if n and n % 16 == 0:
        head, last = data[:-16], bytes(a ^ b for a, b in zip(data[-16:], d))
    else:
        cut = n - n % 16
        tail = data[cut:] + b"\x80"
        tail += bytes(16 - len(tail))
        head, last = data[:cut], bytes(a ^ b for a, b in zip(tail, q))
    enc = Cipher(algorithms.AES(key), modes.CBC(start)).encryptor()
    return (enc.update(head + last) + enc.finalize())[-16:]


def _reference_ctr(key: bytes, n_prime: bytes, data: bytes) -> bytes:
    counter = bytearray(n_prime)
    counter[12] &= 0x7F
    counter[14] &= 0x7F
    enc = Cipher(algorithms.AES(key), modes.CTR(bytes(counter))).encryptor()
    return enc.update(data) + enc.finalize()


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.lists(st.binary(max_size=300), min_size=1,
                                                     max_size=6),
       st.binary(min_size=16, max_size=16))
def test_kept_contexts_equal_fresh_ones(key: bytes, texts: list[bytes], n_prime: bytes) -> None:
    """The long-lived CBC context carries a chaining value between messages, and small CTR
    texts come from the ECB context: every message, in any sequence, gives what fresh
    contexts give."""
    eax = EaxPrime(key)
    for text in texts:
        for start in (eax._d, eax._q):
            assert eax._cmac(start, text) == _reference_cmac(key, start, text, eax._d, eax._q)
        assert eax._ctr(n_prime, text) == _reference_ctr(key, n_prime, text)


def test_counter_wrap_and_long_texts_use_a_ctr_context() -> None:
    """A counter about to wrap past 2**128, and texts past the ECB path's size, still match."""
    eax = EaxPrime(KEY_EX8)
    top = bytes([0xFF] * 12 + [0x7F, 0xFF, 0x7F, 0xFF])  # counter = all ones after masking
    for size in (1, 16, 17, 4096, 4097, 9000):
        text = bytes(range(256)) * (size // 256) + bytes(size % 256)
        assert eax._ctr(top, text) == _reference_ctr(KEY_EX8, top, text)
        for n_prime in (bytes(16), bytes(15) + b"\xf0", bytes(14) + b"\xff\xf0"):
            assert eax._ctr(n_prime, text) == _reference_ctr(KEY_EX8, n_prime, text)
        assert eax._cmac(eax._d, text) == _reference_cmac(KEY_EX8, eax._d, text, eax._d, eax._q)
