import Router

/// Secret keys for encoders, read from files or environment variables, never inline in the YAML
/// and never printed.
///
/// ```yaml
/// keys:                     # the first key signs or encrypts; every key verifies or decrypts
///   - { env: JAT_KEY }
///   - { file: /etc/client-proxy-router/old.key }
/// ```
/// `key: { env: NAME }` is the same as a list of one.
enum KeyMaterial {
    static let minimumLength = 16

    /// Reads `keys:` or `key:` from the options; at least one is required.
    static func read(from options: inout ConfigMapping) throws(ConfigError) -> [[UInt8]] {
        let single = options.optional("key")
        let list = options.optional("keys")
        switch (single, list) {
        case (let single?, nil):
            return [try readOne(single)]
        case (nil, let list?):
            let items = try list.list()
            guard !items.isEmpty else { throw list.error("needs at least one key") }
            var keys: [[UInt8]] = []
            for item in items { keys.append(try readOne(item)) }
            return keys
        case (.some, .some):
            throw options.owner.error("give `key` or `keys`, not both")
        case (nil, nil):
            throw options.owner.error("needs `key: { env: NAME }` or `key: { file: PATH }`")
        }
    }

    private static func readOne(_ value: ConfigValue) throws(ConfigError) -> [UInt8] {
        if value.node.scalar != nil {
            throw value.error("keys are not written in the YAML; use { env: NAME } or { file: PATH }")
        }
        let bytes = Array(try value.fileOrEnvironment("key").utf8)
        guard bytes.count >= minimumLength else {
            throw value.error("a key needs at least \(minimumLength) bytes (found \(bytes.count))")
        }
        return bytes
    }
}
