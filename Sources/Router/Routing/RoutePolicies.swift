/// How many requests may be in flight (`limits:` in the YAML).
public struct RequestLimits: Sendable, Equatable {
    /// Per route; beyond it, requests get `resource-constraint` at once.
    public var maxPending = 100_000
    /// Per resource; a full resource takes no new request until one of its own ends.
    public var maxPendingPerResource: Int?

    public init(maxPending: Int = 100_000, maxPendingPerResource: Int? = nil) {
        self.maxPending = maxPending
        self.maxPendingPerResource = maxPendingPerResource
    }
}

/// A token bucket per sender's bare JID (`rate_limit:`): `rate` requests per second on average,
/// up to `burst` at once.
public struct RateLimit: Sendable, Equatable {
    public var rate: Double
    public var burst: Double

    public init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }
}

/// Outlier ejection (`ejection:`): after `consecutiveFailures` timeouts or server errors in a row,
/// a resource is taken out for `cooldown · 2^(n-1)` (at most `maxCooldown`), n its ejections in a
/// row; a resource that has served well for `maxCooldown` since it came back starts over at n = 1.
public struct EjectionPolicy: Sendable, Equatable {
    public var consecutiveFailures: Int
    public var cooldown: Duration
    public var maxCooldown: Duration

    public init(
        consecutiveFailures: Int = 5, cooldown: Duration = .seconds(30), maxCooldown: Duration = .seconds(300)
    ) {
        self.consecutiveFailures = consecutiveFailures
        self.cooldown = cooldown
        self.maxCooldown = maxCooldown
    }
}

/// XEP-0199 pings to each resource (`ping:`); one unanswered for `timeout` marks it down until it
/// answers one. Any answer counts, an error too: it shows the resource is there.
public struct PingPolicy: Sendable, Equatable {
    public var interval: Duration
    public var timeout: Duration

    public init(interval: Duration = .seconds(30), timeout: Duration = .seconds(10)) {
        self.interval = interval
        self.timeout = timeout
    }
}

/// Retries of `get` requests (`retry:`): a request whose resource left, or that had no answer
/// within `tryTimeout`, is sent once more to another resource, within its original deadline.
/// Only requests whose payload is in one of `namespaces` (or any, with `*`) are retried; `set`
/// never is, as it may have taken effect.
public struct RetryPolicy: Sendable, Equatable {
    public var namespaces: Set<String>
    public var tryTimeout: Duration?

    public init(namespaces: Set<String>, tryTimeout: Duration? = nil) {
        self.namespaces = namespaces
        self.tryTimeout = tryTimeout
    }

    func applies(to iq: XMLElement, kind: RequestKind) -> Bool {
        guard kind == .get else { return false }
        if namespaces.contains("*") { return true }
        guard let payload = iq.elements.first, let namespace = payload.namespace else { return false }
        return namespaces.contains(namespace)
    }
}

/// Who may use a route (`access:`): a sender matching a `deny` pattern is refused; when `allow`
/// is given, a sender must match one of its patterns. A pattern is a JID whose parts may hold `*`
/// (`*@example.org`, `admin@*.example.org`); a pattern without `@` names a domain
/// (`example.org` is every sender there). Patterns compare with the prepared (lowercase) JID.
public struct AccessList: Sendable, Equatable {
    public var allow: [JIDPattern]
    public var deny: [JIDPattern]

    public init(allow: [JIDPattern] = [], deny: [JIDPattern] = []) {
        self.allow = allow
        self.deny = deny
    }

    public var isOpen: Bool { allow.isEmpty && deny.isEmpty }

    public func permits(_ sender: JID) -> Bool {
        if deny.contains(where: { $0.matches(sender) }) { return false }
        return allow.isEmpty || allow.contains { $0.matches(sender) }
    }
}

/// A JID pattern with `*` wildcards per part.
public struct JIDPattern: Sendable, Equatable, CustomStringConvertible {
    public let localpart: String?
    public let domainpart: String
    public let resourcepart: String?
    public let description: String

    public init(_ text: String) throws(JIDError) {
        description = text
        var rest = Substring(text)
        var resource: String?
        if let slash = rest.firstIndex(of: "/") {
            resource = String(rest[rest.index(after: slash)...])
            rest = rest[..<slash]
        }
        var local: String?
        if let at = rest.lastIndex(of: "@") {
            local = String(rest[..<at]).lowercased()
            rest = rest[rest.index(after: at)...]
        }
        guard !rest.isEmpty, local?.isEmpty != true, resource?.isEmpty != true else {
            throw JIDError(input: text, reason: "an empty part in a pattern")
        }
        localpart = local
        domainpart = rest.lowercased()
        resourcepart = resource
    }

    public func matches(_ jid: JID) -> Bool {
        if let localpart, !glob(localpart, jid.localpart ?? "") { return false }
        if let resourcepart, !glob(resourcepart, jid.resourcepart ?? "") { return false }
        return glob(domainpart, jid.domainpart)
    }

    /// `*` matches any run of characters, including none.
    private func glob(_ pattern: String, _ text: String) -> Bool {
        let pattern = Array(pattern.unicodeScalars)
        let text = Array(text.unicodeScalars)
        var p = 0, t = 0, star = -1, mark = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == text[t] {
                p += 1
                t += 1
            } else if p < pattern.count, pattern[p] == "*" {
                star = p
                mark = t
                p += 1
            } else if star >= 0 {
                p = star + 1
                mark += 1
                t = mark
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == "*" { p += 1 }
        return p == pattern.count
    }
}
