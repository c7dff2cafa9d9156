import Router

/// `base64url`: the sender's full JID in unpadded base64url (RFC 4648 §5). Reversible by anyone:
/// the implementing client can read who the sender is.
///
/// The alphabet (`A–Z a–z 0–9 - _`) is left unchanged by Resourceprep, so the address comes back
/// exactly as it was sent. A JID longer than 767 bytes would encode past the 1023-byte limit of a
/// resourcepart and is refused.
public final class Base64URLEncoder: JATEncoder {
    public let name = "base64url"

    public init() {}

    public func encode(_ sender: JID) throws(JATError) -> String {
        let bytes = Array(sender.description.utf8)
        guard (bytes.count * 4 + 2) / 3 <= JID.maxPartLength else {
            throw JATError("sender JID is \(bytes.count) bytes; at most 767 fit in a base64url JAT")
        }
        return Base64URL.encode(bytes)
    }

    public func decode(_ resourcepart: String) throws(JATError) -> JID {
        guard let bytes = Base64URL.decode(resourcepart) else { throw JATError("not unpadded base64url") }
        return try Self.canonicalJID(bytes)
    }

    /// The JID whose text is `bytes`, if `bytes` is exactly the prepared form an encoder makes.
    static func canonicalJID(_ bytes: [UInt8]) throws(JATError) -> JID {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw JATError("not UTF-8") }
        guard let jid = try? JID(text) else { throw JATError("not a JID") }
        guard jid.description == text else { throw JATError("not a prepared JID") }
        return jid
    }
}

/// Unpadded base64url (RFC 4648 §5).
public enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    public static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let chunk = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            out.append(alphabet[Int(chunk >> 18 & 63)])
            out.append(alphabet[Int(chunk >> 12 & 63)])
            out.append(alphabet[Int(chunk >> 6 & 63)])
            out.append(alphabet[Int(chunk & 63)])
            index += 3
        }
        let rest = bytes.count - index
        if rest > 0 {
            let chunk = UInt32(bytes[index]) << 16 | (rest == 2 ? UInt32(bytes[index + 1]) << 8 : 0)
            out.append(alphabet[Int(chunk >> 18 & 63)])
            out.append(alphabet[Int(chunk >> 12 & 63)])
            if rest == 2 { out.append(alphabet[Int(chunk >> 6 & 63)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The decoded bytes, or nil for text outside the alphabet, a length no encoding has, or
    /// non-zero padding bits (so that each byte string has exactly one encoding).
    public static func decode(_ text: String) -> [UInt8]? {
        let input = Array(text.utf8)
        guard !input.isEmpty, input.count % 4 != 1 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(input.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for byte in input {
            let value = values[Int(byte)]
            guard value != 0xFF else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(accumulator >> UInt32(bits) & 0xFF))
            }
        }
        guard accumulator & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return out
    }
}
