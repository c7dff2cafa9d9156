import Foundation
import Plugins

private func client(_ invocation: Invocation) throws(CommandFailure) -> ControlClient {
    ControlClient(socketPath: try invocation.socketPath())
}

private func show(_ result: [String: Any], _ invocation: Invocation, table: () -> String) {
    print(invocation.json ? jsonText(result) : table())
}

func status(_ invocation: Invocation) throws(CommandFailure) {
    try expectArguments(invocation, 0, "status")
    let result = try client(invocation).call("status")
    show(result, invocation) {
        var table = Table(header: ["ROUTE", "TARGET", "CONNECTION", "CONNECTED", "RECONNECTS", "STRATEGY", "ENCODER",
                                   "READY/ONLINE", "PENDING", "FORWARDED", "ANSWERED", "TIMEOUTS", "ERRORS"])
        for route in result["routes"] as? [[String: Any]] ?? [] {
            let errors = (route["errors"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }
                .map { "\($0.key)=\(cell($0.value))" }.joined(separator: ",")
            let uptime = (route["uptime_seconds"] as? Double).map { formatDuration($0) } ?? "-"
            table.rows.append([
                cell(route["route"]), cell(route["target"]), cell(route["connection"]), uptime,
                cell(route["reconnects"]),
                cell(route["strategy"]), cell(route["encoder"]),
                "\(cell(route["resources_ready"]))/\(cell(route["resources_online"]))", cell(route["pending"]),
                cell(route["forwarded"]), cell(route["answered"]), cell(route["timeouts"]),
                errors.isEmpty ? "-" : errors,
            ])
        }
        return table.render()
    }
}

func resources(_ invocation: Invocation) throws(CommandFailure) {
    try expectArguments(invocation, 1, "resources ROUTE")
    let result = try client(invocation).call("resources", ["route": invocation.arguments[0]])
    show(result, invocation) {
        var table = Table(header: ["RESOURCE", "ONLINE", "STATE", "WEIGHT", "PRIORITY", "SHOW", "PENDING", "SERVED",
                                   "ERRORS", "TIMEOUTS", "P50_MS", "P99_MS"])
        for resource in result["resources"] as? [[String: Any]] ?? [] {
            table.rows.append(["resource", "online", "state", "weight", "priority", "show", "pending", "served",
                               "errors", "timeouts", "p50_ms", "p99_ms"].map { cell(resource[$0]) })
        }
        return table.render()
    }
}

func pending(_ invocation: Invocation) throws(CommandFailure) {
    try expectArguments(invocation, 1, "pending ROUTE [--limit N]")
    let result = try client(invocation).call("pending", ["route": invocation.arguments[0],
                                                         "limit": invocation.limit ?? 20])
    show(result, invocation) {
        var table = Table(header: ["SENDER", "RESOURCE", "ID", "AGE_MS"])
        for request in result["pending"] as? [[String: Any]] ?? [] {
            table.rows.append(["sender", "resource", "id", "age_ms"].map { cell(request[$0]) })
        }
        return table.render()
    }
}

func setState(_ command: String, _ invocation: Invocation) throws(CommandFailure) {
    try expectArguments(invocation, 2, "\(command) ROUTE RESOURCE")
    let result = try client(invocation).call(command, ["route": invocation.arguments[0],
                                                       "resource": invocation.arguments[1]])
    show(result, invocation) { "\(cell(result["route"]))/\(cell(result["resource"])): \(cell(result["state"]))" }
}

func weight(_ invocation: Invocation) throws(CommandFailure) {
    try expectArguments(invocation, 3, "weight ROUTE RESOURCE N")
    guard let weight = Int(invocation.arguments[2]), weight >= 0 else {
        throw CommandFailure(message: "the weight is a whole number, 0 or more", exitCode: .usage)
    }
    let result = try client(invocation).call("weight", ["route": invocation.arguments[0],
                                                        "resource": invocation.arguments[1], "weight": weight])
    show(result, invocation) {
        "\(cell(result["route"]))/\(cell(result["resource"])): weight \(cell(result["weight"]))"
    }
}

func strategy(_ invocation: Invocation) throws(CommandFailure) {
    try expectArguments(invocation, 2, "strategy ROUTE NAME")
    let result = try client(invocation).call("strategy", ["route": invocation.arguments[0],
                                                          "name": invocation.arguments[1]])
    show(result, invocation) { "\(cell(result["route"])): strategy \(cell(result["strategy"]))" }
}

func reload(_ invocation: Invocation) throws(CommandFailure) {
    try expectArguments(invocation, 0, "reload")
    let result = try client(invocation).call("reload")
    show(result, invocation) {
        ["added", "removed", "changed", "restarted", "unchanged", "needs_restart"].map { key in
            let names = result[key] as? [String] ?? []
            return "\(key): \(names.isEmpty ? "-" : names.joined(separator: ", "))"
        }.joined(separator: "\n")
    }
}

func stop(_ invocation: Invocation) throws(CommandFailure) {
    try expectArguments(invocation, 0, "stop")
    let result = try client(invocation).call("stop")
    show(result, invocation) { "stopping" }
}

func metrics(_ invocation: Invocation) throws(CommandFailure) {
    try expectArguments(invocation, 0, "metrics")
    let result = try client(invocation).call("metrics")
    show(result, invocation) {
        var text = result["text"] as? String ?? ""
        if text.hasSuffix("\n") { text.removeLast() }
        return text
    }
}

func formatDuration(_ seconds: Double) -> String {
    let whole = Int(seconds)
    if whole < 60 { return "\(whole)s" }
    if whole < 3600 { return "\(whole / 60)m\(whole % 60)s" }
    if whole < 86400 { return "\(whole / 3600)h\(whole % 3600 / 60)m" }
    return "\(whole / 86400)d\(whole % 86400 / 3600)h"
}

func version(_ invocation: Invocation) throws(CommandFailure) {
    try expectArguments(invocation, 0, "version")
    var result: [String: Any] = ["routerctl_protocol": ControlProtocol.version]
    if let router = try? client(invocation).call("version") { result["router_protocol"] = router["protocol"] }
    show(result, invocation) {
        let router = result["router_protocol"].map { "router: control protocol \(cell($0))" } ?? "router: not running"
        return "routerctl: control protocol \(ControlProtocol.version)\n\(router)"
    }
}
