import Foundation

/// Formats scenario results: one line each for the terminal, and a markdown table.
enum Report {
    static func line(_ result: ScenarioResult) -> String {
        let name = "scenario=\"\(result.scenario.name)\""
        if let skipped = result.skipped { return "\(name) skipped=\"\(skipped)\"" }
        var fields = [name]
        if let failure = result.failure {
            fields.append("FAILED=\"\(failure.split(separator: "\n").first ?? "")\"")
        }
        if let rate = result.offeredRate { fields.append("offered_per_s=\(Int(rate))") }
        fields += [
            "rt_per_s=\(Int(result.roundTripsPerSecond))",
            "router_cpu_us_per_rt=\(fixed(result.routerMicrosecondsPerRoundTrip, 2))",
            "router_cores=\(fixed(result.routerCores, 2))",
        ]
        if result.latencies.samples > 0 {
            fields += [
                "p50_us=\(fixed(result.latencies.p50, 0))",
                "p99_us=\(fixed(result.latencies.p99, 0))",
                "p99.9_us=\(fixed(result.latencies.p999, 0))",
            ]
        }
        fields += [
            "rss_idle_mb=\(megabytes(result.idleRSS))",
            "rss_load_mb=\(megabytes(result.loadRSS))",
        ]
        if let perPending = result.bytesPerPending { fields.append("bytes_per_pending=\(Int(perPending))") }
        if let other = result.otherCores { fields.append("other_cores=\(fixed(other, 2))") }
        fields += [
            "bench_cpu_us_per_rt=\(fixed(result.benchMicrosecondsPerRoundTrip, 2))",
            "jat_check=\(result.traffic.jatCheck)",
            "spread=\(spread(result.traffic.perResource))",
            "errors=\(result.traffic.errorCount)",
        ]
        return fields.joined(separator: " ")
    }

    static let tableHeader = """
        | Scenario | Round trips/s | Router CPU µs/RT | Router cores | p50 µs | p99 µs | p99.9 µs \
        | RSS idle MB | RSS load MB | Bench CPU µs/RT | Other cores | Checks |
        |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
        """

    static func tableRow(_ result: ScenarioResult) -> String {
        let name = result.scenario.name
        if let skipped = result.skipped {
            return "| \(name) | skipped: \(escape(skipped)) | | | | | | | | | | |"
        }
        var rate = Int(result.roundTripsPerSecond).formatted
        if let offered = result.offeredRate { rate += " (offered \(Int(offered).formatted))" }
        let latency = result.latencies.samples > 0
            ? [fixed(result.latencies.p50, 0), fixed(result.latencies.p99, 0), fixed(result.latencies.p999, 0)]
            : ["–", "–", "–"]
        var load = megabytes(result.loadRSS)
        if let perPending = result.bytesPerPending { load += " (\(Int(perPending)) B/request)" }
        var checks = result.traffic.errorCount == 0 ? "ok, JAT \(result.traffic.jatCheck)"
            : "\(result.traffic.errorCount) errors: \(escape(result.traffic.errorSamples.first ?? ""))"
        if let failure = result.failure { checks = "FAILED: \(escape(String(failure.prefix(200))))" }
        let cells = [
            name, rate, fixed(result.routerMicrosecondsPerRoundTrip, 2), fixed(result.routerCores, 2),
        ] + latency + [
            megabytes(result.idleRSS), load, fixed(result.benchMicrosecondsPerRoundTrip, 2),
            result.otherCores.map { fixed($0, 2) } ?? "–", checks,
        ]
        return "| " + cells.joined(separator: " | ") + " |"
    }

    /// The issue's targets, each with the figure reached and whether it is met.
    static func targets(_ results: [ScenarioResult]) -> [String] {
        func find(_ name: String) -> ScenarioResult? {
            results.first { $0.scenario.name == name && $0.skipped == nil && $0.failure == nil }
        }
        var rows = ["| Target | Reached | Met |", "|---|---|---|"]
        func row(_ target: String, _ reached: String, _ met: Bool?) {
            rows.append("| \(target) | \(reached) | \(met.map { $0 ? "yes" : "**no**" } ?? "not measured") |")
        }
        let baseline = find(Scenario.baselineName)
        row("≥ 100,000 round trips/s on one route", baseline.map { Int($0.roundTripsPerSecond).formatted } ?? "–",
            baseline.map { $0.roundTripsPerSecond >= 100_000 })
        let fixedRate = results.first { if case .fixedRate = $0.scenario.load { $0.skipped == nil } else { false } }
        row("p99 hop < 1 ms at half the maximum rate",
            fixedRate.map { "\(fixed($0.latencies.p99, 0)) µs at \(Int($0.roundTripsPerSecond).formatted)/s" } ?? "–",
            fixedRate.map { $0.latencies.p99 < 1000 && $0.traffic.errorCount == 0 })
        for small in results where small.scenario.name.hasPrefix("strategy ") && small.scenario.resources == 2 {
            let strategy = small.scenario.strategy.name
            guard let large = find("strategy \(strategy), 1,000 resources"), small.skipped == nil else { continue }
            let ratio = large.routerMicrosecondsPerRoundTrip / max(small.routerMicrosecondsPerRoundTrip, 0.001)
            row("\(strategy): CPU per round trip, 1,000 resources within 2× of 2",
                "\(fixed(large.routerMicrosecondsPerRoundTrip, 2)) vs "
                    + "\(fixed(small.routerMicrosecondsPerRoundTrip, 2)) µs (\(fixed(ratio, 2))×)",
                ratio <= 2)
        }
        let idle = results.filter { $0.skipped == nil && $0.idleRSS > 0 && $0.scenario.routes == 1 }
            .map(\.idleRSS).max()
        row("idle RSS < 20 MB (largest idle RSS of the one-route scenarios)", idle.map { "\(megabytes($0)) MB" } ?? "–",
            idle.map { $0 < 20 * 1024 * 1024 })
        let hold = results.first { $0.bytesPerPending != nil && $0.failure == nil }
        row("≤ 1 KB more RSS per request in flight", hold.flatMap { $0.bytesPerPending }.map { "\(Int($0)) B" } ?? "–",
            hold.flatMap { $0.bytesPerPending }.map { $0 <= 1024 })
        return rows
    }

    /// The markdown section routerbench owns in docs/benchmarks.md.
    static func markdown(_ results: [ScenarioResult], context: String, withTargets: Bool = true) -> String {
        var lines = [context, "", tableHeader]
        lines += results.map(tableRow)
        if withTargets {
            lines += ["", "Targets of the router alone:", ""]
            lines += targets(results)
        }
        let failures = results.filter { $0.failure != nil || $0.traffic.errorCount > 0 }
        if !failures.isEmpty {
            lines += ["", "Problems:", ""]
            for result in failures {
                let detail = result.failure ?? result.traffic.errorSamples.joined(separator: "; ")
                lines.append("- \(result.scenario.name): \(escape(String(detail.prefix(500))))")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in `path`,
    /// creating the file (or the section, at the end) when missing.
    static func replaceSection(named name: String, in path: String, with body: String) throws {
        let begin = "<!-- \(name):begin -->"
        let end = "<!-- \(name):end -->"
        var text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "# Benchmarks\n"
        let section = "\(begin)\n\(body)\n\(end)"
        if let start = text.range(of: begin), let stop = text.range(of: end, range: start.upperBound..<text.endIndex) {
            text.replaceSubrange(start.lowerBound..<stop.upperBound, with: section)
        } else {
            text += (text.hasSuffix("\n") ? "\n" : "\n\n") + section + "\n"
        }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Requests per resource as `min..max` over the resources.
    static func spread(_ counts: [Int]) -> String {
        guard let low = counts.min(), let high = counts.max() else { return "-" }
        return "\(low)..\(high)"
    }

    static func fixed(_ value: Double, _ decimals: Int) -> String {
        String(format: "%.\(decimals)f", value)
    }

    static func megabytes(_ bytes: Int) -> String {
        fixed(Double(bytes) / 1_048_576, 1)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
    }
}
