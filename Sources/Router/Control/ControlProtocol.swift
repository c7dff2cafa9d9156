import Foundation

/// The control socket's protocol: one JSON object per line each way.
///
/// Request: `{"version": 1, "command": "resources", "args": {"route": "proxy.example.org"}}`.
/// Response: `{"version": 1, "ok": true, "result": {…}}` or
/// `{"version": 1, "ok": false, "error": "no route 'x'"}`. A request with another `version` gets
/// an error naming the version the router speaks, so an older or newer `routerctl` says so plainly.
/// The commands and their results are described in docs/control.md.
public enum ControlProtocol {
    public static let version = 1

    public static func success(_ result: Any) -> [String: Any] {
        ["version": version, "ok": true, "result": result]
    }

    public static func failure(_ message: String) -> [String: Any] {
        ["version": version, "ok": false, "error": message]
    }

    public static func request(_ command: String, args: [String: Any] = [:]) -> [String: Any] {
        ["version": version, "command": command, "args": args]
    }

    /// One line of JSON; the fallback is a valid error line even if serialization fails.
    public static func encode(_ object: [String: Any]) -> [UInt8] {
        guard JSONSerialization.isValidJSONObject(object),
              let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        else { return Array("{\"version\":\(version),\"ok\":false,\"error\":\"unencodable response\"}\n".utf8) }
        return Array(data) + [0x0A]
    }

    public static func decode(_ line: [UInt8]) -> [String: Any]? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)) else { return nil }
        return object as? [String: Any]
    }
}
