import COpenSSL

/// The XEP-0114 §3 handshake value: the lowercase hex SHA-1 of the stream id followed by the
/// secret, both as UTF-8 bytes (the secret as configured, not XML-escaped).
public func componentHandshakeDigest(streamID: String, secret: String) -> String {
    let input = Array((streamID + secret).utf8)
    return SHA1.hexDigest(of: input)
}

/// SHA-1 through OpenSSL's EVP interface (`EVP_Digest` with `EVP_sha1`).
public enum SHA1 {
    public static func hexDigest(of bytes: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let status = bytes.withUnsafeBytes { input in
            EVP_Digest(input.baseAddress, input.count, &digest, &length, EVP_sha1(), nil)
        }
        precondition(status == 1, "EVP_Digest(SHA-1) failed")
        return hex(digest.prefix(Int(length)))
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
