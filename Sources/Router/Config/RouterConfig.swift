import Foundation

/// A secret that never prints: logs and error messages show `<redacted>`.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public let value: String

    public init(_ value: String) { self.value = value }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
}

/// A plugin named in the YAML, with its options still to be read by the plugin itself.
public struct PluginSpec: Sendable {
    public let name: String
    /// The options mapping (every key but `name`), or nil when the plugin was given by name alone.
    public let options: ConfigValue?
    /// The YAML value that named the plugin, for errors about the name.
    public let source: ConfigValue

    /// Reads `strategy: random` or `strategy: { name: random, option: … }`.
    init(_ value: ConfigValue) throws(ConfigError) {
        source = value
        if let name = value.node.scalar {
            guard !name.isEmpty else { throw value.error("must name a plugin") }
            self.name = name
            options = nil
            return
        }
        var mapping = try value.mapping()
        name = try mapping.required("name").nonEmptyString()
        guard case .mapping(let pairs) = value.node.value else { throw value.error("expected a mapping") }
        let rest = pairs.filter { $0.key.scalar != "name" }
        let node = YAMLNode(value: .mapping(rest), line: value.node.line, column: value.node.column, quoted: false)
        options = ConfigValue(node: node, file: value.file, path: value.path)
    }

    /// A plugin given by name alone, as `routerctl strategy ROUTE NAME` does.
    public init(name: String, origin: String) {
        self.name = name
        options = nil
        source = ConfigValue(node: YAMLNode(value: .scalar(name), line: 0, column: 0, quoted: false),
                             file: origin, path: "")
    }

    /// The name and options in canonical form: equal fingerprints build equal plugins.
    public var fingerprint: String { name + (options.map { " " + $0.node.canonical } ?? "") }

    /// The options as a mapping to read and `finish()` (with `name` already read); empty when
    /// none were given.
    public func optionMapping() throws(ConfigError) -> ConfigMapping {
        if let options {
            var mapping = try options.mapping()
            // `name` was read already; marking it read lists it among the known keys in errors.
            _ = mapping.optional("name")
            return mapping
        }
        let empty = YAMLNode(value: .mapping([]), line: source.node.line, column: source.node.column, quoted: false)
        return try ConfigValue(node: empty, file: source.file, path: source.path).mapping()
    }
}

/// One proxied target: a component connection, its target account, strategy and encoder.
public struct RouteConfig: Sendable {
    public var component: JID
    public var serverHost: String
    public var serverPort: UInt16
    public var secret: Secret
    public var target: JID
    public var strategy: PluginSpec
    public var encoder: PluginSpec
    public var requestTimeout: Duration
    public var keepalive: Duration
    public var maxStanzaSize: Int
    public var reconnectInitial: Duration
    public var reconnectMax: Duration
    public var limits = RequestLimits()
    public var rateLimit: RateLimit?
    public var access = AccessList()
    public var ejection: EjectionPolicy?
    public var ping: PingPolicy?
    public var retry: RetryPolicy?

    /// The route's name in logs and commands: its component address.
    public var name: String { component.description }

    /// Whether the settings a running route applies live are the same.
    public func sameLiveSettings(as other: RouteConfig) -> Bool {
        requestTimeout == other.requestTimeout && limits == other.limits && rateLimit == other.rateLimit
            && access == other.access && ejection == other.ejection && ping == other.ping && retry == other.retry
    }

    /// Whether `other` can be applied to this route's running connection (only the strategy, the
    /// encoder, the request timeout and the protections differ), rather than needing a new one.
    public func sharesConnection(with other: RouteConfig) -> Bool {
        component == other.component && serverHost == other.serverHost && serverPort == other.serverPort
            && secret == other.secret && target == other.target && keepalive == other.keepalive
            && maxStanzaSize == other.maxStanzaSize && reconnectInitial == other.reconnectInitial
            && reconnectMax == other.reconnectMax
    }
}

/// Where `/metrics` is served over HTTP.
public struct MetricsListener: Sendable, Equatable {
    public var host: String
    public var port: UInt16
}

/// The whole configuration file, validated.
public struct RouterConfig: Sendable {
    public var file: String
    public var logLevel: LogLevel
    public var routes: [RouteConfig]
    /// The control socket that `routerctl` talks to.
    public var controlSocket: String
    public var metrics: MetricsListener?

    /// The control socket used when the YAML names none: under /run for root, else under /tmp
    /// in a folder of the user's own.
    public static var defaultControlSocket: String {
        let uid = geteuid()
        return uid == 0 ? "/run/client-proxy-router/control.sock" : "/tmp/client-proxy-router-\(uid)/control.sock"
    }

    /// Reads and validates `path`; plugin names and options are checked by `catalog`.
    public static func load(path: String, catalog: any PluginCatalog) throws(ConfigError) -> RouterConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            var isFolder: ObjCBool = false
            let reason = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) && isFolder.boolValue
                ? "it is a directory"
                : access(path, R_OK) == 0 ? "it is not UTF-8 text" : String(cString: strerror(errno))
            throw ConfigError(file: path, line: 0, column: 0, key: "", message: "cannot read the file: \(reason)")
        }
        return try parse(text, file: path, catalog: catalog)
    }

    /// Parses configuration text; `file` names it in errors and anchors relative secret files.
    public static func parse(
        _ text: String, file: String, catalog: any PluginCatalog
    ) throws(ConfigError) -> RouterConfig {
        let root: YAMLNode?
        do {
            root = try YAMLDocument.parse(text)
        } catch {
            throw ConfigError(file: file, line: error.line, column: error.column, key: "", message: error.problem)
        }
        guard let root else {
            throw ConfigError(file: file, line: 1, column: 1, key: "", message: "the file is empty; it needs `routes:`")
        }
        var top = try ConfigValue(node: root, file: file, path: "").mapping()
        let logLevel = try top.optional("log_level").map { value throws(ConfigError) -> LogLevel in
            let name = try value.string()
            guard let level = LogLevel(name: name) else {
                throw value.error("unknown level '\(name)'; use trace, debug, info, warning or error")
            }
            return level
        } ?? .info
        let routeValues = try top.required("routes").list()
        var controlSocket = defaultControlSocket
        if let controlValue = top.optional("control") {
            var control = try controlValue.mapping()
            if let socketValue = control.optional("socket") {
                controlSocket = try socketValue.nonEmptyString()
                // sockaddr_un holds 108 bytes with the terminating NUL.
                guard controlSocket.utf8.count <= 107 else {
                    throw socketValue.error("a Unix socket path may be at most 107 bytes (this one has "
                                            + "\(controlSocket.utf8.count))")
                }
            }
            try control.finish()
        }
        var metrics: MetricsListener?
        if let metricsValue = top.optional("metrics") {
            var mapping = try metricsValue.mapping()
            let listenValue = try mapping.required("listen")
            try mapping.finish()
            let text = try listenValue.nonEmptyString()
            guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0
            else { throw listenValue.error("expected HOST:PORT, such as 127.0.0.1:9477, found '\(text)'") }
            var host = String(text[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            metrics = MetricsListener(host: host.isEmpty ? "127.0.0.1" : host, port: port)
        }
        try top.finish()
        guard !routeValues.isEmpty else {
            throw ConfigError(file: file, line: root.line, column: root.column, key: "routes",
                              message: "needs at least one route")
        }

        var routes: [RouteConfig] = []
        var seen: [JID: ConfigValue] = [:]
        for value in routeValues {
            let route = try parseRoute(value, catalog: catalog)
            if let first = seen[route.component] {
                throw value.error("component \(route.component) is already served by \(first.path)")
            }
            seen[route.component] = value
            routes.append(route)
        }
        return RouterConfig(file: file, logLevel: logLevel, routes: routes, controlSocket: controlSocket,
                            metrics: metrics)
    }

    private static func parseRoute(
        _ value: ConfigValue, catalog: any PluginCatalog
    ) throws(ConfigError) -> RouteConfig {
        var mapping = try value.mapping()

        let componentValue = try mapping.required("component")
        let component = try componentValue.jid()
        guard component.localpart == nil, component.resourcepart == nil else {
            throw componentValue.error("a component address is a domain, such as proxy.example.org")
        }
        var server = try mapping.required("server").mapping()
        let host = try server.required("host").nonEmptyString()
        let port = try server.optional("port")?.integer(in: 1...65535) ?? 5347
        try server.finish()
        let secret = try readSecret(try mapping.required("secret"))
        let targetValue = try mapping.required("target")
        let target = try targetValue.jid()
        guard target.localpart != nil, target.resourcepart == nil else {
            throw targetValue.error("the target is an account's bare JID, such as service@example.org")
        }
        let strategy = try PluginSpec(mapping.optional("strategy")
            ?? ConfigValue(node: YAMLNode(value: .scalar("random"), line: value.line, column: value.node.column,
                                          quoted: false), file: value.file, path: "\(value.path).strategy"))
        let encoder = try PluginSpec(mapping.optional("encoder")
            ?? ConfigValue(node: YAMLNode(value: .scalar("base64url"), line: value.line, column: value.node.column,
                                          quoted: false), file: value.file, path: "\(value.path).encoder"))
        let timeout = try mapping.optional("request_timeout")?.duration(minimum: .milliseconds(10)) ?? .seconds(30)
        let keepalive = try mapping.optional("keepalive")?.duration(minimum: .seconds(1)) ?? .seconds(60)
        let maxStanza = try mapping.optional("max_stanza_size")?.size(in: 4096...(64 * 1024 * 1024)) ?? 256 * 1024
        var reconnectInitial = Duration.milliseconds(500)
        var reconnectMax = Duration.seconds(30)
        if let reconnectValue = mapping.optional("reconnect") {
            var reconnect = try reconnectValue.mapping()
            reconnectInitial = try reconnect.optional("initial")?.duration(minimum: .milliseconds(10))
                ?? reconnectInitial
            reconnectMax = try reconnect.optional("max")?.duration(minimum: .milliseconds(10)) ?? reconnectMax
            try reconnect.finish()
            guard reconnectMax >= reconnectInitial else {
                throw reconnectValue.error("max must not be less than initial")
            }
        }
        var route = RouteConfig(
            component: component, serverHost: host, serverPort: UInt16(port), secret: secret, target: target,
            strategy: strategy, encoder: encoder, requestTimeout: timeout, keepalive: keepalive,
            maxStanzaSize: maxStanza, reconnectInitial: reconnectInitial, reconnectMax: reconnectMax
        )
        try readPolicies(&mapping, into: &route)
        try mapping.finish()
        // Build the plugins once, so that a bad name or option fails here with its line.
        _ = try catalog.makeStrategy(route.strategy, for: route)
        _ = try catalog.makeEncoder(route.encoder, for: route)
        return route
    }

    /// The optional protections of a route: limits, rate limit, access list, ejection, pings, retries.
    private static func readPolicies(
        _ mapping: inout ConfigMapping, into route: inout RouteConfig
    ) throws(ConfigError) {
        if let value = mapping.optional("limits") {
            var limits = try value.mapping()
            route.limits.maxPending = try limits.optional("max_pending")?.integer(in: 1...10_000_000)
                ?? route.limits.maxPending
            route.limits.maxPendingPerResource = try limits.optional("max_pending_per_resource")?
                .integer(in: 1...10_000_000)
            try limits.finish()
        }
        if let value = mapping.optional("rate_limit") {
            var rate = try value.mapping()
            let perSecond = try rate.required("requests_per_second").integer(in: 1...1_000_000)
            let burst = try rate.optional("burst")?.integer(in: 1...10_000_000) ?? perSecond
            try rate.finish()
            route.rateLimit = RateLimit(rate: Double(perSecond), burst: Double(burst))
        }
        if let value = mapping.optional("access") {
            var access = try value.mapping()
            if let allow = access.optional("allow"), case .sequence(let items) = allow.node.value, items.isEmpty {
                throw allow.error("an empty allow list would refuse everyone; list patterns, or leave allow out")
            }
            route.access.allow = try patterns(access.optional("allow"))
            route.access.deny = try patterns(access.optional("deny"))
            try access.finish()
        }
        if let value = mapping.optional("ejection") {
            var ejection = try value.mapping()
            var policy = EjectionPolicy()
            policy.consecutiveFailures = try ejection.optional("consecutive_failures")?.integer(in: 1...1000)
                ?? policy.consecutiveFailures
            policy.cooldown = try ejection.optional("cooldown")?.duration(minimum: .milliseconds(100))
                ?? policy.cooldown
            policy.maxCooldown = try ejection.optional("max_cooldown")?.duration(minimum: .milliseconds(100))
                ?? max(policy.maxCooldown, policy.cooldown)
            try ejection.finish()
            guard policy.maxCooldown >= policy.cooldown else { throw value.error("max_cooldown is less than cooldown") }
            route.ejection = policy
        }
        if let value = mapping.optional("ping") {
            var ping = try value.mapping()
            var policy = PingPolicy()
            policy.interval = try ping.optional("interval")?.duration(minimum: .seconds(1)) ?? policy.interval
            policy.timeout = try ping.optional("timeout")?.duration(minimum: .milliseconds(100)) ?? policy.timeout
            try ping.finish()
            route.ping = policy
        }
        if let value = mapping.optional("retry") {
            var retry = try value.mapping()
            let namespaces = try retry.required("namespaces").list().map { item throws(ConfigError) in
                try item.nonEmptyString()
            }
            let tryTimeout = try retry.optional("try_timeout")?.duration(minimum: .milliseconds(10))
            try retry.finish()
            guard !namespaces.isEmpty else { throw value.error("namespaces needs at least one entry, or \"*\"") }
            route.retry = RetryPolicy(namespaces: Set(namespaces), tryTimeout: tryTimeout)
        }
    }

    private static func patterns(_ value: ConfigValue?) throws(ConfigError) -> [JIDPattern] {
        guard let value else { return [] }
        var patterns: [JIDPattern] = []
        for item in try value.list() {
            do {
                patterns.append(try JIDPattern(try item.nonEmptyString()))
            } catch let error as JIDError {
                throw item.error(error.description)
            } catch let error as ConfigError {
                throw error
            } catch {
                throw item.error("\(error)")
            }
        }
        return patterns
    }

    /// `secret: text`, `secret: { file: PATH }` or `secret: { env: NAME }`.
    private static func readSecret(_ value: ConfigValue) throws(ConfigError) -> Secret {
        if let text = value.node.scalar {
            if !value.node.quoted, ["", "~", "null", "Null", "NULL"].contains(text) {
                throw value.error("is empty (YAML null); give the secret, or { file: PATH } or { env: NAME }")
            }
            return Secret(try value.nonEmptyString())
        }
        return Secret(try value.fileOrEnvironment("secret"))
    }
}
