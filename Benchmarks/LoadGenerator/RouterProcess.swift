import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The router under test: `routerctl run CONFIG`, optionally under a wrapper such as valgrind,
/// with its output in a log file. Stopped by its own PID only.
final class RouterProcess {
    let process: Process
    let logPath: String

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Starts `binary run config`; `wrapper` (a command and its arguments) goes in front.
    init(binary: String, config: String, logPath: String, wrapper: [String] = []) throws {
        let command = wrapper + [binary, "run", config]
        process = Process()
        process.executableURL = URL(fileURLWithPath: Self.resolve(command[0]))
        process.arguments = Array(command.dropFirst())
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        self.logPath = logPath
        try process.run()
    }

    /// SIGTERM, then SIGKILL after `timeout` seconds; returns the exit status.
    @discardableResult
    func stop(timeout: Double = 20) -> Int32 {
        if process.isRunning {
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning, Date() < deadline { usleep(20_000) }
            if process.isRunning {
                kill(pid, SIGKILL)
                process.waitUntilExit()
            }
        }
        return process.terminationStatus
    }

    /// The last lines of the router's log, for messages about a failure.
    func logTail(lines: Int = 15) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// `name` as given if it holds a slash, else found in `PATH`.
    static func resolve(_ name: String) -> String {
        if name.contains("/") { return name }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return name
    }
}

/// Runs `routerctl check CONFIG`; nil when it accepts the file, else what it said.
func routerRefusal(binary: String, config: String) -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = ["check", config]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    do {
        try process.run()
    } catch {
        return "cannot run \(binary): \(error)"
    }
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus != 0 else { return nil }
    return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}
