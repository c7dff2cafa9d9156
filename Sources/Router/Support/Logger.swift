#if canImport(Glibc)
import Glibc
#endif

/// Severity of a log line; an operator sets the minimum in the YAML or with `--log-level`.
public enum LogLevel: Int, Comparable, Sendable, CaseIterable {
    case trace, debug, info, warning, error

    public init?(name: String) {
        switch name.lowercased() {
        case "trace": self = .trace
        case "debug": self = .debug
        case "info": self = .info
        case "warning", "warn": self = .warning
        case "error": self = .error
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .trace: "trace"
        case .debug: "debug"
        case .info: "info"
        case .warning: "warning"
        case .error: "error"
        }
    }

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Writes one line per event: a timestamp, the level, a constant message and `key=value` fields.
///
/// Fields bound to the logger (such as `route=`) come after the message and before the event's own.
/// Callers on the per-stanza path use `debug`/`trace`, whose arguments are not evaluated unless the
/// level is enabled.
public struct Logger: Sendable {
    public var level: LogLevel
    public private(set) var boundFields: [(String, String)]

    public init(level: LogLevel = .info, fields: [(String, String)] = []) {
        self.level = level
        self.boundFields = fields
    }

    /// A logger that adds `key=value` to every line.
    public func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy.boundFields.append((key, value))
        return copy
    }

    @inlinable public func enabled(_ level: LogLevel) -> Bool { level >= self.level }

    public func trace(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> [(String, String)] = []) {
        if enabled(.trace) { write(.trace, message(), fields()) }
    }

    public func debug(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> [(String, String)] = []) {
        if enabled(.debug) { write(.debug, message(), fields()) }
    }

    public func info(_ message: String, _ fields: [(String, String)] = []) {
        if enabled(.info) { write(.info, message, fields) }
    }

    public func warning(_ message: String, _ fields: [(String, String)] = []) {
        if enabled(.warning) { write(.warning, message, fields) }
    }

    public func error(_ message: String, _ fields: [(String, String)] = []) {
        if enabled(.error) { write(.error, message, fields) }
    }

    private func write(_ level: LogLevel, _ message: String, _ fields: [(String, String)]) {
        var line = Logger.timestamp()
        line += " level=" + level.name
        line += " msg=" + Logger.quoted(message)
        for (key, value) in boundFields + fields {
            line += " " + key + "=" + Logger.quoted(value)
        }
        line += "\n"
        // One write(2) per line, so that lines from different routes never interleave.
        let bytes = Array(line.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return -1 }
                return Glibc.write(2, base + offset, buffer.count - offset)
            }
            if written <= 0 { break }
            offset += written
        }
    }

    /// Quotes a value when it is empty or holds a space, quote, `=` or control character.
    static func quoted(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.utf8.contains { byte in
            byte <= 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "=") || byte == 0x7F
        }
        guard needsQuotes else { return value }
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// UTC time with milliseconds, as `2026-12-03T16:40:00.123Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let millis = Int(now.tv_nsec) / 1_000_000
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
            + "T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))"
            + ".\(pad(Int32(millis), 3))Z"
    }
}
