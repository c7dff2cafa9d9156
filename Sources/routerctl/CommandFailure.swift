#if canImport(Glibc)
import Glibc
#endif

/// What the user sees when a command fails: one line and an exit code, no stack trace.
struct CommandFailure: Error {
    var message: String
    var exitCode: ExitCode
}

/// Exit codes, as `routerctl help` documents them.
enum ExitCode: Int32 {
    case success = 0
    /// The router reported an error, or running it failed.
    case failure = 1
    case usage = 2
    case invalidConfig = 3
    /// No router answers on the control socket.
    case notRunning = 4
}

func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
