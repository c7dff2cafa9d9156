import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// What a reload changed, by route name.
public struct ReloadSummary: Sendable {
    public var added: [String] = []
    public var removed: [String] = []
    /// Strategy, encoder or timeout applied to the running connection.
    public var changed: [String] = []
    /// Connection settings changed: the route was replaced by a new connection.
    public var restarted: [String] = []
    public var unchanged: [String] = []
    /// Settings that changed in the file but apply only at the next start.
    public var needsRestart: [String] = []
}

/// The routes of one configuration, running, and the control plane that steers them.
///
/// Route changes (start, reload, stop) and control requests run on `queue`; each route keeps
/// its own serial context, and the control plane only sends it work and reads snapshots.
public final class RouterRuntime: @unchecked Sendable {
    // @unchecked Sendable: every stored `var` is touched on `queue` only.
    let queue = DispatchQueue(label: "router.control")
    let catalog: any PluginCatalog
    let log: Logger
    let configPath: String
    var config: RouterConfig
    /// Running routes, in configuration order.
    var routes: [ComponentRoute] = []
    /// Removed by a reload: finishing their requests in flight before they close.
    var retiring: [ComponentRoute] = []
    private var controlServer: RequestServer?
    private var metricsServer: RequestServer?
    private var stopping = false
    /// Called once every route has stopped, after `stop` or a `stop` command.
    public var onStopped: (@Sendable () -> Void)?

    /// Builds every route's strategy and encoder with `catalog`.
    public init(config: RouterConfig, catalog: any PluginCatalog, log: Logger) throws(ConfigError) {
        self.config = config
        self.configPath = config.file
        self.catalog = catalog
        self.log = log
        for route in config.routes { routes.append(try makeRoute(route)) }
    }

    func makeRoute(_ route: RouteConfig) throws(ConfigError) -> ComponentRoute {
        let strategy = try catalog.makeStrategy(route.strategy, for: route)
        let encoder = try catalog.makeEncoder(route.encoder, for: route)
        return ComponentRoute(config: route, strategy: strategy, encoder: encoder, log: log)
    }

    /// Opens the control socket (and the metrics listener), then connects every route.
    public func start() throws(SocketError) {
        let started: Result<Void, SocketError> = queue.sync {
            do throws(SocketError) {
                try startControl()
            } catch {
                return .failure(error)
            }
            log.info("router started", [("routes", "\(routes.count)"), ("control", config.controlSocket)])
            for route in routes { route.start() }
            return .success(())
        }
        try started.get()
    }

    private func startControl() throws(SocketError) {
        let path = config.controlSocket
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            let folder = String(path[..<slash])
            if mkdir(folder, 0o700) != 0, errno != EEXIST { throw SocketError("mkdir(\(folder))") }
        }
        let listener = try UnixSocket.listen(path: path)
        let owner = geteuid()
        let server = RequestServer(
            listening: listener, queue: queue, options: RequestServer.lines(),
            admit: { fd in
                guard UnixSocket.peerUserID(fd) != owner else { return nil }
                let refusal = ControlProtocol.failure("permission denied: the router runs as another user")
                return ControlProtocol.encode(refusal)
            },
            respond: { [unowned self] request in ControlProtocol.encode(self.handle(request)) }
        )
        server.start()
        controlServer = server

        if let metrics = config.metrics {
            let listener = try TCPSocket.listen(host: metrics.host, port: metrics.port)
            let http = RequestServer(
                listening: listener, queue: queue, options: RequestServer.http(),
                respond: { [unowned self] request in self.serveHTTP(request) }
            )
            http.start()
            metricsServer = http
            log.info("metrics listening", [("address", "\(metrics.host):\(metrics.port)")])
            if !["127.0.0.1", "::1", "localhost"].contains(metrics.host) {
                log.warning("metrics are served beyond loopback, without authentication", [("host", metrics.host)])
            }
        }
    }

    /// Stops every route (answering their requests in flight), then calls `completion` once.
    public func stop(completion: @escaping @Sendable () -> Void) {
        queue.async { self.stopAll(completion: completion) }
    }

    func stopAll(completion: @escaping @Sendable () -> Void) {
        guard !stopping else { return }
        stopping = true
        controlServer?.stop()
        metricsServer?.stop()
        unlink(config.controlSocket)
        let group = DispatchGroup()
        for route in routes + retiring {
            group.enter()
            route.stop { group.leave() }
        }
        group.notify(queue: .global()) { [log] in
            log.info("router stopped")
            completion()
        }
    }

    // MARK: Reload

    /// Reads the configuration file again and applies the difference. A file that does not
    /// load changes nothing. Call on `queue`.
    func reload() throws(ConfigError) -> ReloadSummary {
        let fresh = try RouterConfig.load(path: configPath, catalog: catalog)
        var summary = ReloadSummary()
        var kept: [ComponentRoute] = []
        var replacements: [ComponentRoute] = []
        // Build everything first, so that a plugin that fails to build changes nothing.
        var plans: [(old: ComponentRoute?, new: RouteConfig, route: ComponentRoute?)] = []
        for route in fresh.routes {
            let existing = routes.first { $0.name == route.name }
            if let existing, existing.config.sharesConnection(with: route) {
                plans.append((existing, route, nil))
            } else {
                plans.append((existing, route, try makeRoute(route)))
            }
        }
        var liveChanges: [(ComponentRoute, RouteConfig, (any BalancingStrategy)?, (any JATEncoder)?)] = []
        for plan in plans where plan.route == nil {
            guard let old = plan.old else { continue }
            let current = old.snapshotConfig()
            let strategy = current.strategy.fingerprint == plan.new.strategy.fingerprint
                ? nil : try catalog.makeStrategy(plan.new.strategy, for: plan.new)
            let encoder = current.encoder.fingerprint == plan.new.encoder.fingerprint
                ? nil : try catalog.makeEncoder(plan.new.encoder, for: plan.new)
            if strategy != nil || encoder != nil || !current.sameLiveSettings(as: plan.new) {
                liveChanges.append((old, plan.new, strategy, encoder))
            } else {
                summary.unchanged.append(old.name)
            }
        }

        for (route, newConfig, strategy, encoder) in liveChanges {
            try? route.mutateCore { core in
                core.reconfigure(newConfig, strategy: strategy, encoder: encoder, now: Instant.now())
            }
            summary.changed.append(route.name)
        }
        for plan in plans {
            if let replacement = plan.route {
                if let old = plan.old {
                    retire(old)
                    summary.restarted.append(old.name)
                } else {
                    summary.added.append(replacement.name)
                }
                replacements.append(replacement)
                kept.append(replacement)
            } else if let old = plan.old {
                kept.append(old)
            }
        }
        for route in routes where !fresh.routes.contains(where: { $0.component.description == route.name }) {
            retire(route)
            summary.removed.append(route.name)
        }
        routes = kept
        config.routes = fresh.routes
        for route in replacements { route.start() }
        // Limitation: the control socket, metrics address and log level are read at start only.
        if fresh.controlSocket != config.controlSocket { summary.needsRestart.append("control.socket") }
        if fresh.metrics != config.metrics { summary.needsRestart.append("metrics") }
        if fresh.logLevel != config.logLevel { summary.needsRestart.append("log_level") }
        if !summary.needsRestart.isEmpty {
            log.warning("some changes apply only at the next start",
                        [("settings", summary.needsRestart.joined(separator: ","))])
        }
        log.info("configuration reloaded", [
            ("added", "\(summary.added.count)"), ("removed", "\(summary.removed.count)"),
            ("changed", "\(summary.changed.count)"), ("restarted", "\(summary.restarted.count)"),
        ])
        return summary
    }

    /// Takes a route out: it refuses new requests, lets those in flight finish, then closes.
    private func retire(_ route: ComponentRoute) {
        retiring.append(route)
        route.drainAndStop { [weak self] in
            guard let self else { return }
            self.queue.async {
                guard !self.stopping else { return }
                self.retiring.removeAll { $0 === route }
                // Nothing refers to the route any more: its thread can end.
                route.loop.shutdown()
            }
        }
    }

    // MARK: Metrics

    func serveHTTP(_ request: [UInt8]) -> [UInt8] {
        let line = String(decoding: request.prefix { $0 != 0x0D && $0 != 0x0A }, as: UTF8.self)
        let parts = line.split(separator: " ")
        let status: String
        let body: String
        var type = "text/plain; charset=utf-8"
        if parts.count >= 2, parts[0] == "GET", parts[1] == "/metrics" || parts[1].hasPrefix("/metrics?") {
            status = "200 OK"
            body = PrometheusText.render(routes.map { $0.snapshot() })
            type = PrometheusText.contentType
        } else if parts.count >= 2, parts[0] != "GET" {
            status = "405 Method Not Allowed"
            body = "only GET /metrics\n"
        } else {
            status = "404 Not Found"
            body = "only GET /metrics\n"
        }
        let bytes = Array(body.utf8)
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(bytes.count)\r\n"
            + "Connection: close\r\n\r\n"
        return Array(head.utf8) + bytes
    }
}

extension RouterRuntime {
    /// Reloads on SIGHUP; a bad file is logged and changes nothing.
    public func reloadFromSignal() {
        queue.async {
            self.log.info("reloading", [("signal", "SIGHUP")])
            do {
                _ = try self.reload()
            } catch {
                self.log.error("reload refused: the configuration did not load; nothing changed",
                               [("error", "\(error)")])
            }
        }
    }
}
