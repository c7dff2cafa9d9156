/// A configuration problem, with the file, line and key that hold it.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    /// Path of the key, as `routes[0].server.port`; empty for the file itself.
    public var key: String
    public var message: String

    public init(file: String, line: Int, column: Int, key: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    public var description: String {
        let place = key.isEmpty ? "" : "\(key): "
        guard line > 0 else { return "\(file): \(place)\(message)" }
        return "\(file):\(line):\(column): \(place)\(message)"
    }
}
