// libFuzzer harness: a route's core (`RouteCore`) driven by a sequence of events the input
// chooses, checked against what the router promises.
//
// Input: the first byte picks the strategy; then each pair of bytes is one event: a resource of
// the target comes online or leaves, a user asks (get or set, a namespace that is retried or not),
// a resource answers (rightly or not), a forged reply, time passes, the connection is lost and
// comes back, an operator drains, weighs or switches the strategy.
// Checked, besides "no crash":
// 1. A request goes only to a resource that is online (in the model the harness keeps).
// 2. Every user request gets exactly one answer, addressed to its sender with its id; none twice.
// 3. A `set` is sent to a resource once; a `get` at most twice (one retry).
// 4. When the events run out and time passes beyond every deadline, nothing is left unanswered.
import Plugins

private let target = "service@example.org"
private let component = "proxy.example.org"
private let resources = ["a", "b", "c", "d"]
private let users = ["u0@example.org/phone", "u1@example.org/desk", "u2@other.example/x"]
private let strategies = ["random", "round-robin", "least-pending", "sticky-by-sender"]
private let catalog = BuiltInPlugins()

private func config(strategy: String) -> RouteConfig {
    let yaml = """
        routes:
          - component: \(component)
            server: { host: 127.0.0.1 }
            secret: s
            target: \(target)
            strategy: \(strategy)
            request_timeout: 5s
            limits: { max_pending: 6, max_pending_per_resource: 2 }
            ejection: { consecutive_failures: 2, cooldown: 1s, max_cooldown: 4s }
            ping: { interval: 2s, timeout: 1s }
            retry: { namespaces: ["urn:example:echo"], try_timeout: 1s }
        """
    do {
        guard let route = try RouterConfig.parse(yaml, file: "fuzz.yaml", catalog: catalog).routes.first else {
            fatalError("no route")
        }
        return route
    } catch {
        fatalError("the harness's configuration does not load: \(error)")
    }
}

private let configs = strategies.map(config(strategy:))

private struct Model {
    /// Resources online, as the harness announced them.
    var online: Set<String> = []
    /// User requests not yet answered: "user id" -> kind.
    var open: [String: String] = [:]
    /// Requests as forwarded: "user id" -> resources they were sent to, in order.
    var sentTo: [String: [String]] = [:]
    /// The latest forwarded copy of each open request, to answer it.
    var forwarded: [String: XMLElement] = [:]
    var nextID = 0
    var connected = true
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRouteCore(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let route = configs[Int(bytes[0]) % configs.count]
    var core: RouteCore
    do {
        core = RouteCore(config: route, strategy: try catalog.makeStrategy(route.strategy, for: route),
                         encoder: try catalog.makeEncoder(route.encoder, for: route), log: Logger(level: .error))
    } catch {
        fatalError("\(error)")
    }
    var model = Model()
    var now = Instant(nanoseconds: 1_000_000_000_000)
    var actions: [RouteAction] = []
    core.streamAuthenticated(into: &actions)
    check(&actions, &model)

    var index = 1
    while index + 1 < bytes.count {
        let op = bytes[index], arg = Int(bytes[index + 1])
        index += 2
        let resource = resources[arg % resources.count]
        switch op % 12 {
        case 0, 1:
            guard model.connected else { break }
            let show = arg & 0x10 != 0 ? "<show>away</show>" : ""
            let priority = arg & 0x20 != 0 ? "<priority>-1</priority>" : ""
            core.handle(stanza("<presence from='\(target)/\(resource)' to='\(component)'>\(show)\(priority)</presence>"),
                        now: now, into: &actions)
            model.online.insert(resource)
        case 2:
            guard model.connected else { break }
            core.handle(stanza("<presence type='unavailable' from='\(target)/\(resource)' to='\(component)'/>"),
                        now: now, into: &actions)
            model.online.remove(resource)
        case 3, 4, 5:
            guard model.connected else { break }
            let user = users[arg % users.count]
            let kind = arg & 0x08 != 0 ? "set" : "get"
            let namespace = arg & 0x40 != 0 ? "urn:other" : "urn:example:echo"
            model.nextID += 1
            let id = "q\(model.nextID)"
            model.open["\(user) \(id)"] = kind
            core.handle(stanza("<iq type='\(kind)' id='\(id)' from='\(user)' to='\(component)'>"
                               + "<query xmlns='\(namespace)'/></iq>"), now: now, into: &actions)
        case 6, 7:
            // The resource holding an open request answers it: a result, or a server error.
            guard model.connected, !model.forwarded.isEmpty else { break }
            let keys = model.forwarded.keys.sorted()
            let request = model.forwarded[keys[arg % keys.count]]!
            let type = arg & 0x80 != 0 ? "error" : "result"
            let error = type == "error"
                ? "<error type='cancel'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>" : ""
            core.handle(stanza("<iq type='\(type)' id='\(request[attribute: "id"]!)' from='\(request[attribute: "to"]!)' "
                               + "to='\(request[attribute: "from"]!)'>\(error)</iq>"), now: now, into: &actions)
        case 8:
            // A reply from the wrong resource, or to a made-up id, or from outside the target.
            guard model.connected, !model.forwarded.isEmpty else { break }
            let keys = model.forwarded.keys.sorted()
            let request = model.forwarded[keys[arg % keys.count]]!
            let from = arg & 0x10 != 0 ? "mallory@example.org/\(resource)" : "\(target)/\(resource)"
            let id = arg & 0x20 != 0 ? "made-up" : request[attribute: "id"]!
            // When it is the right resource after all, the request is answered; `check` sees it.
            core.handle(stanza("<iq type='result' id='\(id)' from='\(from)' to='\(request[attribute: "from"]!)'/>"),
                        now: now, into: &actions)
        case 9:
            now = now + .milliseconds(Int64(arg) * 40)
            if model.connected { core.expire(now: now, into: &actions) }
        case 10:
            if model.connected {
                core.connectionLost()
                model.connected = false
                model.online.removeAll()
            } else {
                core.streamAuthenticated(into: &actions)
                model.connected = true
            }
        default:
            // An operator: drain, maintenance, ready, a weight, or a new strategy.
            switch arg % 5 {
            case 0: try? core.setState(.draining, of: resource)
            case 1: try? core.setState(.maintenance, of: resource)
            case 2: try? core.setState(.ready, of: resource)
            case 3: try? core.setWeight(arg % 3, of: resource)
            default:
                let name = strategies[arg % strategies.count]
                if let strategy = try? catalog.makeStrategy(PluginSpec(name: name, origin: "fuzz"), for: route) {
                    core.replaceStrategy(strategy)
                }
            }
        }
        check(&actions, &model)
    }

    // The events ran out: reconnect if needed, let every deadline pass, answer what resources hold.
    if !model.connected {
        core.streamAuthenticated(into: &actions)
        model.connected = true
        check(&actions, &model)
    }
    for _ in 0..<4 {
        now = now + .seconds(6)
        core.expire(now: now, into: &actions)
        check(&actions, &model)
    }
    if !model.open.isEmpty {
        fatalError("requests never answered: \(model.open.keys.sorted()); in flight in the core: \(core.pending.count)")
    }
    return 0
}

/// Applies the core's output to the model, checking each stanza against the promises.
private func check(_ actions: inout [RouteAction], _ model: inout Model) {
    for action in actions {
        guard case .send(let out) = action, out.name == "iq" else { continue }
        let type = out[attribute: "type"] ?? ""
        let to = out[attribute: "to"] ?? ""
        let id = out[attribute: "id"] ?? ""
        if to.hasPrefix(target + "/") {
            let resource = String(to.dropFirst(target.count + 1))
            guard type == "get" || type == "set" else { fatalError("the router sent a \(type) to a resource") }
            if id.hasPrefix("cpr-ping-") { continue }
            guard model.online.contains(resource) else {
                fatalError("request \(id) went to \(resource), which is not online (online: \(model.online.sorted()))")
            }
            guard let jat = out[attribute: "from"]?.split(separator: "/", maxSplits: 1).last,
                  let bytes = Base64URL.decode(String(jat)) else { fatalError("forwarded from no JAT: \(out)") }
            let key = "\(String(decoding: bytes, as: UTF8.self)) \(id)"
            guard let kind = model.open[key] else { fatalError("forwarded \(key), which is not open") }
            model.sentTo[key, default: []].append(resource)
            let times = model.sentTo[key]!.count
            if kind == "set" && times > 1 || times > 2 {
                fatalError("\(kind) \(key) was sent \(times) times: \(model.sentTo[key]!)")
            }
            model.forwarded[key] = out
        } else if type == "result" || type == "error" {
            let key = "\(to) \(id)"
            guard model.open.removeValue(forKey: key) != nil else {
                fatalError("an answer to \(key), which is not an open request (twice, or never asked): \(out)")
            }
            guard out[attribute: "from"] == component else { fatalError("answer from the wrong address: \(out)") }
            model.forwarded[key] = nil
        } else {
            fatalError("the router sent a \(type) to \(to): \(out)")
        }
    }
    actions.removeAll(keepingCapacity: true)
}

nonisolated(unsafe) private let parser = XMLStreamParser()
nonisolated(unsafe) private var parserOpened = false

/// One stanza, parsed as it would come on a component stream.
private func stanza(_ xml: String) -> XMLElement {
    if !parserOpened {
        let header = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>"
        _ = try? parser.feed(Array(header.utf8))
        parserOpened = true
    }
    guard let events = try? parser.feed(Array(xml.utf8)), case .element(let element)? = events.first else {
        fatalError("the harness wrote a stanza that does not parse: \(xml)")
    }
    return element
}
