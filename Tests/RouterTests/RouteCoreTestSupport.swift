@testable import Plugins
@testable import Router
import Testing

// What every suite that drives a RouteCore without sockets needs: a route built from YAML by the
// built-in plugins, and stanzas written as XML, parsed as they would arrive on a component stream.

/// One route to service@example.org with `strategy`, `encoder` and `extra` route keys (one or more
/// lines, written as if at the route's own indentation).
func routeYAML(strategy: String = "round-robin", encoder: String = "base64url", extra: String = "") -> String {
    let extraLines = extra.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n")
    return """
        routes:
          - component: proxy.example.org
            server: { host: 127.0.0.1 }
            secret: s3cret
            target: service@example.org
            strategy: \(strategy)
            encoder: \(encoder)
            request_timeout: 5s
        \(extraLines)
        """
}

/// The core of the first route of `yaml`, with its plugins built as the router builds them.
func makeRouteCore(yaml: String) throws -> RouteCore {
    let catalog = BuiltInPlugins()
    let route = try #require(try RouterConfig.parse(yaml, file: "core.yaml", catalog: catalog).routes.first)
    return RouteCore(config: route, strategy: try catalog.makeStrategy(route.strategy, for: route),
                     encoder: try catalog.makeEncoder(route.encoder, for: route), log: Logger(level: .error))
}

/// The stanzas in `xml`, parsed inside a component stream.
func componentStanzas(_ xml: String) throws -> [XMLElement] {
    let header = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>"
    return try XMLStreamParser().feed(Array((header + xml).utf8)).compactMap { event in
        if case .element(let element) = event { element } else { nil }
    }
}

/// The stanzas among `actions`, whatever else they hold.
func stanzas(in actions: [RouteAction]) -> [XMLElement] {
    actions.compactMap { if case .send(let stanza) = $0 { stanza } else { nil } }
}
