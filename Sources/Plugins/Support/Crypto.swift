import COpenSSL

/// Thin wrappers over the OpenSSL calls the encoders use. No pointer leaves this file.
enum Crypto {
    struct Failure: Error, CustomStringConvertible {
        var call: String
        var description: String { "\(call) failed" }
    }

    /// HMAC-SHA-256 of `message` under `key` (`HMAC` with `EVP_sha256`).
    static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let result = key.withUnsafeBytes { keyBytes in
            message.withUnsafeBytes { messageBytes in
                HMAC(EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                     messageBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), messageBytes.count,
                     &out, &length)
            }
        }
        // HMAC only fails on allocation failure; an all-zero tag then never verifies.
        guard result != nil else { return [UInt8](repeating: 0, count: 32) }
        return Array(out.prefix(Int(length)))
    }

    /// Compares in time that depends only on the length (`CRYPTO_memcmp`).
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { left in
            b.withUnsafeBytes { right in CRYPTO_memcmp(left.baseAddress, right.baseAddress, a.count) == 0 }
        }
    }

    /// `count` bytes from OpenSSL's CSPRNG (`RAND_bytes`).
    static func randomBytes(_ count: Int) throws(Failure) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&out, Int32(count)) == 1 else { throw Failure(call: "RAND_bytes") }
        return out
    }

    /// AES-256-GCM encryption (`EVP_aes_256_gcm`): ciphertext followed by a 16-byte tag.
    static func sealAES256GCM(key: [UInt8], iv: [UInt8], plaintext: [UInt8]) throws(Failure) -> [UInt8] {
        guard let context = EVP_CIPHER_CTX_new() else { throw Failure(call: "EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }
        var out = [UInt8](repeating: 0, count: plaintext.count + 16)
        var length: Int32 = 0
        var total = 0
        guard EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, nil, nil) == 1,
              EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(iv.count), nil) == 1,
              EVP_EncryptInit_ex(context, nil, nil, key, iv) == 1
        else { throw Failure(call: "EVP_EncryptInit_ex") }
        if !plaintext.isEmpty {
            guard EVP_EncryptUpdate(context, &out, &length, plaintext, Int32(plaintext.count)) == 1 else {
                throw Failure(call: "EVP_EncryptUpdate")
            }
            total = Int(length)
        }
        let finished = out.withUnsafeMutableBufferPointer { buffer in
            EVP_EncryptFinal_ex(context, buffer.baseAddress.map { $0 + total }, &length)
        }
        guard finished == 1 else { throw Failure(call: "EVP_EncryptFinal_ex") }
        total += Int(length)
        let tagged = out.withUnsafeMutableBufferPointer { buffer in
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, 16, buffer.baseAddress.map { $0 + total })
        }
        guard tagged == 1 else { throw Failure(call: "EVP_CTRL_GCM_GET_TAG") }
        return Array(out.prefix(total + 16))
    }

    /// AES-256-GCM decryption of `sealed` (ciphertext + tag); nil when the tag does not verify.
    static func openAES256GCM(key: [UInt8], iv: [UInt8], sealed: [UInt8]) -> [UInt8]? {
        guard sealed.count >= 16, let context = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(context) }
        let ciphertext = Array(sealed.dropLast(16))
        var tag = Array(sealed.suffix(16))
        var out = [UInt8](repeating: 0, count: ciphertext.count + 16)
        var length: Int32 = 0
        var total = 0
        guard EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, nil, nil) == 1,
              EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(iv.count), nil) == 1,
              EVP_DecryptInit_ex(context, nil, nil, key, iv) == 1
        else { return nil }
        if !ciphertext.isEmpty {
            guard EVP_DecryptUpdate(context, &out, &length, ciphertext, Int32(ciphertext.count)) == 1 else {
                return nil
            }
            total = Int(length)
        }
        guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, 16, &tag) == 1 else { return nil }
        let finished = out.withUnsafeMutableBufferPointer { buffer in
            EVP_DecryptFinal_ex(context, buffer.baseAddress.map { $0 + total }, &length)
        }
        guard finished == 1 else { return nil }
        total += Int(length)
        return Array(out.prefix(total))
    }
}
