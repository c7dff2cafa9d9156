import Foundation

/// A YAML node with the file and key path it came from, read into typed values with errors that
/// name the file, line and key. Plugins read their options through it too.
public struct ConfigValue: Sendable {
    public let node: YAMLNode
    public let file: String
    public let path: String

    public init(node: YAMLNode, file: String, path: String) {
        self.node = node
        self.file = file
        self.path = path
    }

    public var line: Int { node.line }

    /// An error about this value.
    public func error(_ message: String) -> ConfigError {
        ConfigError(file: file, line: node.line, column: node.column, key: path, message: message)
    }

    public func string() throws(ConfigError) -> String {
        guard let text = node.scalar else { throw error("expected text, found \(node.kindName)") }
        return text
    }

    public func nonEmptyString() throws(ConfigError) -> String {
        let text = try string()
        guard !text.isEmpty else { throw error("must not be empty") }
        return text
    }

    public func integer(in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let text = try string()
        guard let number = Int(text) else { throw error("expected a whole number, found '\(text)'") }
        guard range.contains(number) else {
            throw error("\(number) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    public func bool() throws(ConfigError) -> Bool {
        switch try string().lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error("expected true or false, found '\(node.scalar ?? "")'")
        }
    }

    /// A duration written with a unit (`500ms`, `30s`, `5m`, `1h`); a bare number is seconds.
    public func duration(minimum: Duration = .zero) throws(ConfigError) -> Duration {
        let (number, scale) = try splitUnit([("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)])
        let decimal = !number.isEmpty && number.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }
        guard decimal, let value = Double(number), value.isFinite, value >= 0 else {
            throw error("expected a duration such as 500ms, 30s or 5m, found '\(node.scalar ?? "")'")
        }
        let nanoseconds = value * scale * 1e9
        guard nanoseconds < 1e18 else { throw error("is too long (at most about 30 years)") }
        let duration = Duration.nanoseconds(Int64(nanoseconds))
        guard duration >= minimum else { throw error("must be at least \(minimum.seconds)s") }
        return duration
    }

    /// A size in bytes written plainly or with a unit (`64KiB`, `1MiB`, `512`).
    public func size(in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let (number, scale) = try splitUnit([("KiB", 1024), ("MiB", 1024 * 1024), ("KB", 1000), ("MB", 1e6), ("B", 1)])
        guard let value = Int(number) else {
            throw error("expected a size such as 65536, 64KiB or 1MiB, found '\(node.scalar ?? "")'")
        }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: Int(scale))
        guard !overflow, range.contains(bytes) else {
            let written = "\(number)\(scale == 1 ? "" : " units")"
            throw error("\(written) is out of range \(range.lowerBound)...\(range.upperBound) bytes")
        }
        return bytes
    }

    /// The number and the factor of its unit; the first suffix that matches wins, none means 1.
    private func splitUnit(_ units: [(suffix: String, factor: Double)]) throws(ConfigError) -> (String, Double) {
        let text = try string().trimmingSpaces()
        for unit in units where text.hasSuffix(unit.suffix) {
            return (String(text.dropLast(unit.suffix.count)).trimmingSpaces(), unit.factor)
        }
        return (text, 1)
    }

    /// Secret text given as `{ file: PATH }` (relative to the YAML file; trailing whitespace
    /// trimmed) or `{ env: NAME }`; `what` names it in errors ("secret", "key").
    public func fileOrEnvironment(_ what: String) throws(ConfigError) -> String {
        var mapping = try self.mapping()
        let file = mapping.optional("file")
        let env = mapping.optional("env")
        try mapping.finish()
        var text: String
        switch (file, env) {
        case (let file?, nil):
            var path = try file.nonEmptyString()
            if !path.hasPrefix("/") {
                path = URL(fileURLWithPath: self.file).deletingLastPathComponent().path + "/" + path
            }
            guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw file.error("cannot read the \(what) file '\(path)'")
            }
            text = contents
        case (nil, let env?):
            let name = try env.nonEmptyString()
            guard let contents = ProcessInfo.processInfo.environment[name] else {
                throw env.error("the environment variable \(name) is not set")
            }
            text = contents
        default:
            throw error("give exactly one of `file:` and `env:`")
        }
        text = text.trimmingSpaces()
        guard !text.isEmpty else { throw error("the \(what) is empty") }
        return text
    }

    public func jid() throws(ConfigError) -> JID {
        let text = try nonEmptyString()
        do {
            return try JID(text)
        } catch {
            throw self.error("\(error)")
        }
    }

    public func mapping() throws(ConfigError) -> ConfigMapping {
        guard case .mapping(let pairs) = node.value else {
            throw error("expected a mapping of keys to values, found \(node.kindName)")
        }
        return try ConfigMapping(pairs: pairs, owner: self)
    }

    public func list() throws(ConfigError) -> [ConfigValue] {
        guard case .sequence(let items) = node.value else { throw error("expected a list, found \(node.kindName)") }
        return items.enumerated().map { index, item in
            ConfigValue(node: item, file: file, path: "\(path)[\(index)]")
        }
    }
}

/// The keys of a YAML mapping. Keys read are remembered, so that `finish()` can refuse the ones
/// nobody asked for: a misspelt option fails loudly instead of being ignored.
public struct ConfigMapping: Sendable {
    public let owner: ConfigValue
    private var values: [String: ConfigValue] = [:]
    /// Where each key is written, for errors about the key itself.
    private var keyNodes: [String: YAMLNode] = [:]
    private var order: [String] = []
    private var used: Set<String> = []

    init(pairs: [(key: YAMLNode, value: YAMLNode)], owner: ConfigValue) throws(ConfigError) {
        self.owner = owner
        for (key, value) in pairs {
            let keyValue = ConfigValue(node: key, file: owner.file, path: owner.path)
            let name = try keyValue.string()
            let path = owner.path.isEmpty ? name : "\(owner.path).\(name)"
            guard values[name] == nil else {
                throw ConfigError(file: owner.file, line: key.line, column: key.column, key: path,
                                  message: "appears more than once")
            }
            values[name] = ConfigValue(node: value, file: owner.file, path: path)
            keyNodes[name] = key
            order.append(name)
        }
    }

    public var keys: [String] { order }

    public mutating func optional(_ key: String) -> ConfigValue? {
        used.insert(key)
        return values[key]
    }

    public mutating func required(_ key: String) throws(ConfigError) -> ConfigValue {
        used.insert(key)
        guard let value = values[key] else {
            let path = owner.path.isEmpty ? key : "\(owner.path).\(key)"
            if let typo = order.first(where: { !used.contains($0) && editDistance($0, key) <= 2 }),
               let node = keyNodes[typo] {
                throw ConfigError(file: owner.file, line: node.line, column: node.column, key: path,
                                  message: "is required; is '\(typo)' a misspelling of it?")
            }
            throw ConfigError(file: owner.file, line: owner.node.line, column: owner.node.column, key: path,
                              message: "is required")
        }
        return value
    }

    /// Refuses keys that were never read.
    public func finish() throws(ConfigError) {
        for key in order where !used.contains(key) {
            guard let value = values[key] else { continue }
            let known = used.sorted().joined(separator: ", ")
            let place = keyNodes[key] ?? value.node
            let hint = used.sorted().first { editDistance($0, key) <= 2 }.map { "did you mean '\($0)'? " } ?? ""
            throw ConfigError(file: value.file, line: place.line, column: place.column, key: value.path,
                              message: "unknown key; \(hint)(known here: \(known))")
        }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}

/// Levenshtein distance, to suggest the key a typo meant.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    guard !a.isEmpty else { return b.count }
    guard !b.isEmpty else { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
