import Router

/// `hmac`: the sender in base64url, a dot, and a truncated HMAC-SHA-256 tag over the route and
/// the sender: `<base64url(sender)>.<base64url(tag)>`.
///
/// The implementing client can read the sender but cannot forge an address: a reply to a JAT
/// whose tag does not verify under any configured key is refused. The first key signs, every
/// key verifies, so keys rotate without breaking requests in flight. Tags compare in constant
/// time.
public final class HMACEncoder: JATEncoder {
    public let name = "hmac"
    public let tagLength: Int
    private let keys: [[UInt8]]
    private let context: [UInt8]
    /// The longest sender JID, in bytes, whose JAT still fits a resourcepart.
    public let maxSenderLength: Int

    /// - Parameters:
    ///   - route: bound into every tag, so a JAT made for one route is refused by another.
    public init(keys: [[UInt8]], route: String, tagLength: Int = 12) {
        precondition(!keys.isEmpty, "HMACEncoder needs a key")
        self.keys = keys
        self.tagLength = tagLength
        self.context = Array(route.utf8) + [0]
        let tagText = (tagLength * 4 + 2) / 3
        self.maxSenderLength = (JID.maxPartLength - 1 - tagText) * 3 / 4
    }

    public func encode(_ sender: JID) throws(JATError) -> String {
        let bytes = Array(sender.description.utf8)
        guard bytes.count <= maxSenderLength else {
            throw JATError("sender JID is \(bytes.count) bytes; at most \(maxSenderLength) fit in an hmac JAT")
        }
        return Base64URL.encode(bytes) + "." + Base64URL.encode(tag(bytes, key: keys[0]))
    }

    public func decode(_ resourcepart: String) throws(JATError) -> JID {
        let parts = resourcepart.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let sender = Base64URL.decode(String(parts[0])),
              let received = Base64URL.decode(String(parts[1])), received.count == tagLength
        else { throw JATError("not an hmac JAT") }
        var verified = false
        for key in keys where Crypto.constantTimeEqual(tag(sender, key: key), received) {
            verified = true
        }
        guard verified else { throw JATError("tag does not verify") }
        return try Base64URLEncoder.canonicalJID(sender)
    }

    private func tag(_ sender: [UInt8], key: [UInt8]) -> [UInt8] {
        Array(Crypto.hmacSHA256(key: key, message: context + sender).prefix(tagLength))
    }
}
