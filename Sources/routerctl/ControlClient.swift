import Foundation
import Plugins

/// Sends one request to a running router over its control socket and returns the result.
struct ControlClient {
    var socketPath: String

    func call(_ command: String, _ args: [String: Any] = [:]) throws(CommandFailure) -> [String: Any] {
        let fd: Int32
        do {
            fd = try UnixSocket.connect(path: socketPath)
        } catch where error.code == EACCES || error.code == EPERM {
            throw CommandFailure(
                message: "permission denied on \(socketPath): the router runs as another user", exitCode: .failure)
        } catch {
            throw CommandFailure(
                message: "router not running (no answer on \(socketPath): \(String(cString: strerror(error.code))))",
                exitCode: .notRunning)
        }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        let request = ControlProtocol.encode(ControlProtocol.request(command, args: args))
        // A router that refuses this client answers and closes at once, so the send may fail
        // while the refusal already waits to be read: read in any case.
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var line: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(fd, &chunk, chunk.count)
            guard count > 0 else { break }
            line.append(contentsOf: chunk[0..<count])
            if chunk[0..<count].contains(0x0A) { break }
        }
        guard let end = line.firstIndex(of: 0x0A), let response = ControlProtocol.decode(Array(line[..<end])) else {
            let reason = sent == request.count ? "the router sent no answer" : "could not send to \(socketPath)"
            throw CommandFailure(message: reason, exitCode: .failure)
        }
        if let version = response["version"] as? Int, version != ControlProtocol.version {
            throw CommandFailure(
                message: "the router speaks control protocol \(version), this routerctl \(ControlProtocol.version)",
                exitCode: .failure)
        }
        guard response["ok"] as? Bool == true else {
            let exitCode: ExitCode = response["code"] as? String == "invalid-config" ? .invalidConfig : .failure
            throw CommandFailure(message: response["error"] as? String ?? "the router refused", exitCode: exitCode)
        }
        return response["result"] as? [String: Any] ?? [:]
    }
}
