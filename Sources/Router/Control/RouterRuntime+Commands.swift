import Foundation

/// The control commands. Each runs on the runtime's queue and answers with a JSON-ready value.
extension RouterRuntime {
    func handle(_ line: [UInt8]) -> [String: Any] {
        guard let request = ControlProtocol.decode(line) else {
            return ControlProtocol.failure("the request is not a JSON object")
        }
        guard let version = request["version"] as? Int, version == ControlProtocol.version else {
            let given = request["version"].map { "\($0)" } ?? "none"
            return ControlProtocol.failure(
                "protocol version \(given) is not supported: this router speaks version \(ControlProtocol.version); "
                    + "use the routerctl that came with it")
        }
        guard let command = request["command"] as? String else { return ControlProtocol.failure("no command") }
        let args = request["args"] as? [String: Any] ?? [:]
        do throws(ControlError) {
            return ControlProtocol.success(try run(command, args))
        } catch {
            var response = ControlProtocol.failure(error.message)
            if let code = error.code { response["code"] = code }
            return response
        }
    }

    private func run(_ command: String, _ args: [String: Any]) throws(ControlError) -> Any {
        switch command {
        case "status":
            return ["routes": routes.map { Self.statusObject($0.snapshot()) }]
        case "resources":
            let route = try findRoute(args)
            let snapshot = route.snapshot()
            return ["route": route.name, "resources": snapshot.resources.map(Self.resourceObject)]
        case "pending":
            let route = try findRoute(args)
            let limit = args["limit"] as? Int ?? 20
            let pending = route.oldestPending(limit: max(1, limit))
            return ["route": route.name, "pending": pending.map { request in
                ["sender": request.sender, "resource": request.resource, "id": request.id,
                 "age_ms": Self.milliseconds(request.age)] as [String: Any]
            }]
        case "drain", "ready", "maint":
            let route = try findRoute(args)
            let resource = try text(args, "resource")
            let state: ResourceState = command == "drain" ? .draining : command == "maint" ? .maintenance : .ready
            try route.mutateCore { core throws(ControlError) in try core.setState(state, of: resource) }
            return ["route": route.name, "resource": resource, "state": state.rawValue]
        case "weight":
            let route = try findRoute(args)
            let resource = try text(args, "resource")
            guard let weight = args["weight"] as? Int, weight >= 0, weight <= 1_000_000 else {
                throw ControlError("a weight is a whole number from 0 to 1000000")
            }
            try route.mutateCore { core throws(ControlError) in try core.setWeight(weight, of: resource) }
            return ["route": route.name, "resource": resource, "weight": weight]
        case "strategy":
            let route = try findRoute(args)
            let name = try text(args, "name")
            let config = route.snapshotConfig()
            let strategy: any BalancingStrategy
            do {
                strategy = try catalog.makeStrategy(PluginSpec(name: name, origin: "routerctl strategy"), for: config)
            } catch {
                throw ControlError(error.message)
            }
            let sendable = UncheckedTransfer(strategy)
            try route.mutateCore { core in core.replaceStrategy(sendable.value) }
            return ["route": route.name, "strategy": name]
        case "reload":
            do {
                let summary = try reload()
                return ["added": summary.added, "removed": summary.removed, "changed": summary.changed,
                        "restarted": summary.restarted, "unchanged": summary.unchanged,
                        "needs_restart": summary.needsRestart]
            } catch {
                log.error("reload refused: the configuration did not load; nothing changed", [("error", "\(error)")])
                throw ControlError("\(error)", code: "invalid-config")
            }
        case "stop":
            log.info("stopping", [("reason", "routerctl stop")])
            let done = onStopped
            // Answer first, then stop: the response must reach routerctl before the socket closes.
            queue.async { self.stopAll { done?() } }
            return ["stopping": true]
        case "metrics":
            return ["text": PrometheusText.render(routes.map { $0.snapshot() })]
        case "version":
            return ["protocol": ControlProtocol.version]
        default:
            throw ControlError("unknown command '\(command)'")
        }
    }

    private func findRoute(_ args: [String: Any]) throws(ControlError) -> ComponentRoute {
        let name = try text(args, "route")
        if let route = routes.first(where: { $0.name == name }) { return route }
        if let jid = try? JID(name), let route = routes.first(where: { $0.name == jid.description }) { return route }
        let known = routes.map(\.name).joined(separator: ", ")
        throw ControlError("no route '\(name)' (routes: \(known))")
    }

    private func text(_ args: [String: Any], _ key: String) throws(ControlError) -> String {
        guard let value = args[key] as? String, !value.isEmpty else { throw ControlError("missing \(key)") }
        return value
    }

    static func milliseconds(_ duration: Duration) -> Double {
        (duration.seconds * 1_000_000).rounded() / 1000
    }

    static func statusObject(_ route: RouteSnapshot) -> [String: Any] {
        [
            "route": route.name, "target": route.target, "connection": route.connection.rawValue,
            "uptime_seconds": orNull(route.connectedFor.map { ($0.seconds * 10).rounded() / 10 }),
            "reconnects": route.reconnects, "strategy": route.strategy, "encoder": route.encoder,
            "resources_ready": route.resourcesReady, "resources_online": route.resourcesOnline,
            "pending": route.pending, "forwarded": route.stats.forwarded, "answered": route.stats.answered,
            "timeouts": route.stats.timeouts, "dropped_replies": route.stats.droppedReplies,
            "errors": route.stats.routerErrors,
        ]
    }

    static func resourceObject(_ resource: ResourceSnapshot) -> [String: Any] {
        [
            "resource": resource.name, "online": resource.online, "state": resource.state.rawValue,
            "weight": resource.weight, "priority": resource.priority, "show": orNull(resource.show?.rawValue),
            "pending": resource.pending, "served": resource.stats.served, "errors": resource.stats.errors,
            "timeouts": resource.stats.timeouts,
            "p50_ms": orNull(resource.stats.latency.quantile(0.5).map { ($0 * 1_000_000).rounded() / 1000 }),
            "p99_ms": orNull(resource.stats.latency.quantile(0.99).map { ($0 * 1_000_000).rounded() / 1000 }),
        ]
    }
}

/// JSON null for a missing value (`JSONSerialization` refuses a Swift `nil`).
func orNull(_ value: Any?) -> Any {
    value ?? NSNull()
}

/// Carries a value that is not `Sendable` into a route's serial context, which becomes its only
/// user: the sender gives it up and never touches it again.
struct UncheckedTransfer<Value>: @unchecked Sendable {
    let value: Value

    init(_ value: Value) { self.value = value }
}
