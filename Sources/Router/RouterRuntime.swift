import Dispatch

/// All routes of one configuration, running: starts them together and stops them together.
public final class RouterRuntime: Sendable {
    public let routes: [ComponentRoute]
    private let log: Logger

    /// Builds every route's strategy and encoder with `catalog`.
    public init(config: RouterConfig, catalog: any PluginCatalog, log: Logger) throws(ConfigError) {
        var routes: [ComponentRoute] = []
        for route in config.routes {
            let strategy = try catalog.makeStrategy(route.strategy, for: route)
            let encoder = try catalog.makeEncoder(route.encoder, for: route)
            routes.append(ComponentRoute(config: route, strategy: strategy, encoder: encoder, log: log))
        }
        self.routes = routes
        self.log = log
    }

    public func start() {
        log.info("router started", [("routes", "\(routes.count)")])
        for route in routes { route.start() }
    }

    /// Stops every route (answering their requests in flight), then calls `completion` once.
    public func stop(completion: @escaping @Sendable () -> Void) {
        let group = DispatchGroup()
        for route in routes {
            group.enter()
            route.stop { group.leave() }
        }
        group.notify(queue: .global()) { [log] in
            log.info("router stopped")
            completion()
        }
    }
}
