@_exported import Router

/// The strategies and encoders that ship with the router, found by the name the YAML gives.
public struct BuiltInPlugins: PluginCatalog {
    public init() {}

    public static let strategyNames = ["random"]
    public static let encoderNames = ["base64url"]

    public func makeStrategy(_ spec: PluginSpec, for route: RouteConfig) throws(ConfigError) -> any BalancingStrategy {
        switch spec.name {
        case "random":
            try spec.optionMapping().finish()
            return RandomStrategy()
        default:
            throw spec.source.error(
                "unknown strategy '\(spec.name)'; known: \(Self.strategyNames.joined(separator: ", "))")
        }
    }

    public func makeEncoder(_ spec: PluginSpec, for route: RouteConfig) throws(ConfigError) -> any JATEncoder {
        switch spec.name {
        case "base64url":
            try spec.optionMapping().finish()
            return Base64URLEncoder()
        default:
            throw spec.source.error(
                "unknown encoder '\(spec.name)'; known: \(Self.encoderNames.joined(separator: ", "))")
        }
    }
}
