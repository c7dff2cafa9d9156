/// The kind of IQ request a strategy is asked to place.
public enum RequestKind: String, Sendable {
    case get, set
}

/// What a balancing strategy knows of one request.
public struct BalancingRequest: Sendable {
    /// The full JID of the requester.
    public let sender: JID
    public let kind: RequestKind

    public init(sender: JID, kind: RequestKind) {
        self.sender = sender
        self.kind = kind
    }
}

/// Picks the resource that serves a request.
///
/// A route owns its strategy and calls it from the route's serial context only, so a strategy may
/// keep state (a cursor, a table) without locks. It must never pick a resource that is not ready.
public protocol BalancingStrategy: AnyObject {
    /// The name the YAML uses for this strategy.
    var name: String { get }

    /// The name of the resource to send `request` to, or nil when none of `pool` can take it.
    func pick(for request: BalancingRequest, from pool: ResourcePool) -> String?
}

/// Why a JAT could not be made or read.
public struct JATError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String

    public init(_ reason: String) { self.reason = reason }

    public var description: String { reason }
}

/// Jabber Address Translation: turns a sender's JID into a resourcepart of the component and back.
///
/// `decode` must refuse anything `encode` did not make. `encode` must refuse a sender whose
/// resourcepart would exceed `JID.maxPartLength` bytes, and must produce text that Resourceprep
/// leaves unchanged (the server prepares the address before it comes back).
public protocol JATEncoder: AnyObject {
    /// The name the YAML uses for this encoder.
    var name: String { get }

    func encode(_ sender: JID) throws(JATError) -> String

    func decode(_ resourcepart: String) throws(JATError) -> JID

    /// A request translated to `jat` was forwarded. An encoder that keeps state keeps the entry
    /// behind `jat` until every such request has ended.
    func requestStarted(jat: String)

    /// A request translated to `jat` ended: answered, timed out or failed.
    func requestEnded(jat: String)
}

extension JATEncoder {
    public func requestStarted(jat: String) {}
    public func requestEnded(jat: String) {}
}

/// Builds strategies and encoders from their YAML specification; bad names and options are
/// reported as `ConfigError`s with the file, line and key.
public protocol PluginCatalog: Sendable {
    func makeStrategy(_ spec: PluginSpec, for route: RouteConfig) throws(ConfigError) -> any BalancingStrategy
    func makeEncoder(_ spec: PluginSpec, for route: RouteConfig) throws(ConfigError) -> any JATEncoder
}
