@_exported import Router

/// The strategies and encoders that ship with the router, found by the name the YAML gives.
/// Each reads its own options and refuses unknown ones, with the file, line and key.
public struct BuiltInPlugins: PluginCatalog {
    public init() {}

    public static let strategyNames = ["random", "round-robin", "least-pending", "sticky-by-sender"]
    public static let encoderNames = ["base64url", "hmac", "table", "sealed"]

    public func makeStrategy(_ spec: PluginSpec, for route: RouteConfig) throws(ConfigError) -> any BalancingStrategy {
        var options = try spec.optionMapping()
        let policy = try PresencePolicy.read(from: &options)
        let strategy: any BalancingStrategy
        switch spec.name {
        case "random":
            strategy = RandomStrategy(policy: policy)
        case "round-robin":
            strategy = RoundRobinStrategy(policy: policy)
        case "least-pending":
            let scanLimit = try options.optional("scan_limit")?.integer(in: 2...1_000_000) ?? 16
            strategy = LeastPendingStrategy(policy: policy, scanLimit: scanLimit)
        case "sticky-by-sender":
            var key = StickyBySenderStrategy.Key.bare
            if let value = options.optional("key") {
                let text = try value.string()
                guard let parsed = StickyBySenderStrategy.Key(rawValue: text) else {
                    throw value.error("expected bare or full, found '\(text)'")
                }
                key = parsed
            }
            strategy = StickyBySenderStrategy(policy: policy, key: key)
        default:
            throw spec.source.error(
                "unknown strategy '\(spec.name)'; known: \(Self.strategyNames.joined(separator: ", "))")
        }
        try options.finish()
        return strategy
    }

    public func makeEncoder(_ spec: PluginSpec, for route: RouteConfig) throws(ConfigError) -> any JATEncoder {
        var options = try spec.optionMapping()
        let encoder: any JATEncoder
        switch spec.name {
        case "base64url":
            encoder = Base64URLEncoder()
        case "hmac":
            let keys = try KeyMaterial.read(from: &options)
            let tagLength = try options.optional("tag_bytes")?.integer(in: 8...32) ?? 12
            encoder = HMACEncoder(keys: keys, route: route.name, tagLength: tagLength)
        case "table":
            let capacity = try options.optional("max_entries")?.integer(in: 1...100_000_000) ?? 100_000
            let expiry = try options.optional("idle_expiry")?.duration(minimum: .seconds(1)) ?? .seconds(600)
            encoder = TableEncoder(capacity: capacity, idleExpiry: expiry)
        case "sealed":
            encoder = SealedEncoder(keys: try KeyMaterial.read(from: &options), route: route.name)
        default:
            throw spec.source.error(
                "unknown encoder '\(spec.name)'; known: \(Self.encoderNames.joined(separator: ", "))")
        }
        try options.finish()
        return encoder
    }
}
