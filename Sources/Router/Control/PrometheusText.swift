/// Route snapshots in the Prometheus text exposition format (version 0.0.4).
public enum PrometheusText {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
    static let prefix = "client_proxy_router_"

    public static func render(_ routes: [RouteSnapshot]) -> String {
        var out = MetricWriter()
        out.family("requests_forwarded_total", "counter", "IQ requests forwarded to a resource.")
        for route in routes { out.sample("requests_forwarded_total", ["route": route.name], route.stats.forwarded) }
        out.family("replies_total", "counter", "Replies from resources returned to requesters.")
        for route in routes { out.sample("replies_total", ["route": route.name], route.stats.answered) }
        out.family("router_errors_total", "counter", "Error replies the router made itself, by condition.")
        for route in routes {
            for (condition, count) in route.stats.routerErrors.sorted(by: { $0.key < $1.key }) {
                out.sample("router_errors_total", ["route": route.name, "condition": condition], count)
            }
        }
        out.family("timeouts_total", "counter", "Requests answered with remote-server-timeout.")
        for route in routes { out.sample("timeouts_total", ["route": route.name], route.stats.timeouts) }
        out.family("dropped_replies_total", "counter", "Replies dropped: late, duplicate, forged or undecodable.")
        for route in routes { out.sample("dropped_replies_total", ["route": route.name], route.stats.droppedReplies) }
        out.family("requests_in_flight", "gauge", "Requests forwarded and not yet answered.")
        for route in routes { out.sample("requests_in_flight", ["route": route.name], route.pending) }
        out.family("connection_up", "gauge", "1 while the component stream is authenticated.")
        for route in routes {
            out.sample("connection_up", ["route": route.name], route.connection == .authenticated ? 1 : 0)
        }
        out.family("reconnects_total", "counter", "Component connections lost after authentication.")
        for route in routes { out.sample("reconnects_total", ["route": route.name], route.reconnects) }
        out.family("resources", "gauge", "Online resources of the target, by state.")
        for route in routes {
            for state in ResourceState.allCases {
                let count = route.resources.filter { $0.online && $0.state == state }.count
                out.sample("resources", ["route": route.name, "state": state.rawValue], count)
            }
        }
        let perResource: [(String, String, String, (ResourceSnapshot) -> Int)] = [
            ("resource_requests_in_flight", "gauge", "Requests in flight per resource.", { $0.pending }),
            ("resource_served_total", "counter", "Replies per resource.", { $0.stats.served }),
            ("resource_timeouts_total", "counter", "Timed-out requests per resource.", { $0.stats.timeouts }),
            ("resource_ejections_total", "counter", "Ejections of a resource after failures.", { $0.stats.ejections }),
        ]
        for (name, type, help, value) in perResource {
            out.family(name, type, help)
            for route in routes {
                for resource in route.resources {
                    out.sample(name, ["route": route.name, "resource": resource.name], value(resource))
                }
            }
        }
        out.family("resource_reply_seconds", "histogram", "Time from forwarding a request to its reply.")
        for route in routes {
            for resource in route.resources {
                out.histogram("resource_reply_seconds", ["route": route.name, "resource": resource.name],
                              resource.stats.latency)
            }
        }
        return out.text
    }
}

private struct MetricWriter {
    var text = ""

    mutating func family(_ name: String, _ type: String, _ help: String) {
        text += "# HELP \(PrometheusText.prefix)\(name) \(help)\n# TYPE \(PrometheusText.prefix)\(name) \(type)\n"
    }

    mutating func sample(_ name: String, _ labels: [String: String], _ value: Int) {
        text += "\(PrometheusText.prefix)\(name)\(render(labels)) \(value)\n"
    }

    mutating func histogram(_ name: String, _ labels: [String: String], _ histogram: LatencyHistogram) {
        var cumulative = 0
        for (index, bound) in LatencyHistogram.bounds.enumerated() {
            cumulative += histogram.counts[index]
            var withBound = labels
            withBound["le"] = "\(bound)"
            text += "\(PrometheusText.prefix)\(name)_bucket\(render(withBound)) \(cumulative)\n"
        }
        var infinite = labels
        infinite["le"] = "+Inf"
        text += "\(PrometheusText.prefix)\(name)_bucket\(render(infinite)) \(histogram.total)\n"
        text += "\(PrometheusText.prefix)\(name)_sum\(render(labels)) \(histogram.sum)\n"
        text += "\(PrometheusText.prefix)\(name)_count\(render(labels)) \(histogram.total)\n"
    }

    private func render(_ labels: [String: String]) -> String {
        guard !labels.isEmpty else { return "" }
        let order = ["route", "resource", "condition", "state", "le"]
        let pairs = labels.sorted { (order.firstIndex(of: $0.key) ?? 99) < (order.firstIndex(of: $1.key) ?? 99) }
        return "{" + pairs.map { "\($0.key)=\"\(escape($0.value))\"" }.joined(separator: ",") + "}"
    }

    private func escape(_ value: String) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }
}
