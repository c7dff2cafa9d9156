import Router

/// `sealed`: the sender encrypted with deterministic authenticated encryption, so the
/// implementing client sees a stable opaque id, and the router keeps no state (a restart loses
/// nothing).
///
/// Synthetic-IV construction: `iv = HMAC-SHA-256(ivKey, sender)[0..<12]`, then AES-256-GCM of the
/// sender under `encKey` with that IV; the JAT is `base64url(iv ‖ ciphertext ‖ tag)`. Both keys
/// are derived from a configured key and the route (`HMAC(key, label ‖ route)`), so a JAT made
/// for one route is refused by another. Decryption checks the GCM tag and that the IV is the one
/// the sender gives. The same sender always gets the same JAT, which is the point; it reveals
/// only that two requests came from the same sender.
public final class SealedEncoder: JATEncoder {
    public let name = "sealed"

    private struct KeyPair {
        let encryption: [UInt8]
        let iv: [UInt8]
    }

    private let keys: [KeyPair]
    /// Base64url of 12 + n + 16 bytes must fit 1023 characters.
    public let maxSenderLength = JID.maxPartLength * 3 / 4 - 28

    public init(keys: [[UInt8]], route: String) {
        precondition(!keys.isEmpty, "SealedEncoder needs a key")
        let routeBytes = Array(route.utf8)
        self.keys = keys.map { key in
            KeyPair(
                encryption: Crypto.hmacSHA256(key: key, message: Array("jat-sealed-encryption\0".utf8) + routeBytes),
                iv: Crypto.hmacSHA256(key: key, message: Array("jat-sealed-iv\0".utf8) + routeBytes)
            )
        }
    }

    public func encode(_ sender: JID) throws(JATError) -> String {
        let bytes = Array(sender.description.utf8)
        guard bytes.count <= maxSenderLength else {
            throw JATError("sender JID is \(bytes.count) bytes; at most \(maxSenderLength) fit in a sealed JAT")
        }
        let key = keys[0]
        let iv = syntheticIV(bytes, key: key)
        do {
            return Base64URL.encode(iv + (try Crypto.sealAES256GCM(key: key.encryption, iv: iv, plaintext: bytes)))
        } catch {
            throw JATError("encryption failed")
        }
    }

    public func decode(_ resourcepart: String) throws(JATError) -> JID {
        guard let bytes = Base64URL.decode(resourcepart), bytes.count > 28 else { throw JATError("not a sealed JAT") }
        let iv = Array(bytes.prefix(12))
        let sealed = Array(bytes.dropFirst(12))
        for key in keys {
            guard let plaintext = Crypto.openAES256GCM(key: key.encryption, iv: iv, sealed: sealed),
                  Crypto.constantTimeEqual(syntheticIV(plaintext, key: key), iv)
            else { continue }
            return try Base64URLEncoder.canonicalJID(plaintext)
        }
        throw JATError("does not decrypt under any configured key")
    }

    private func syntheticIV(_ plaintext: [UInt8], key: KeyPair) -> [UInt8] {
        Array(Crypto.hmacSHA256(key: key.iv, message: plaintext).prefix(12))
    }
}
