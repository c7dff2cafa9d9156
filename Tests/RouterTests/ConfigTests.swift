import Plugins
@testable import Router
import Testing
#if canImport(Glibc)
import Glibc
#endif


/// The place of an error, as `file:line key`.
private func place(_ error: ConfigError?) -> String? {
    error.map { "\($0.file):\($0.line) \($0.key)" }
}

/// A folder of its own for files a test writes.
private func temporaryFolder(_ name: String) throws -> String {
    let path = "/tmp/router-config-tests-\(getpid())-\(name)"
    mkdir(path, 0o700)
    return path
}

private func writeFile(_ text: String, to path: String) throws {
    guard let file = fopen(path, "w") else { throw ConfigError(file: path, line: 0, column: 0, key: "", message: "") }
    fputs(text, file)
    fclose(file)
}

@Suite("Configuration: valid files")
struct ConfigValidTests {
    @Test("the valid file gives one route with what it says and the defaults for the rest")
    func validFile() throws {
        let config = try parseConfig(validYAML)
        let route = try #require(config.routes.first)

        #expect(config.routes.count == 1)
        #expect(config.logLevel == .info)
        #expect(route.component == (try JID("proxy.example.org")))
        #expect(route.serverHost == "127.0.0.1" && route.serverPort == 5347)
        #expect(route.secret.value == "s3cret")
        #expect(route.target == (try JID("service@example.org")))
        #expect(route.requestTimeout == .seconds(5))
        #expect(route.keepalive == .seconds(60))
        #expect(route.maxStanzaSize == 256 * 1024)
    }

    @Test("strategy and encoder may be omitted: random and base64url")
    func pluginDefaults() throws {
        let text = validYAML.replacingLines { !$0.contains("strategy:") && !$0.contains("encoder:") }
        let route = try #require(try parseConfig(text).routes.first)

        #expect(route.strategy.name == "random")
        #expect(route.encoder.name == "base64url")
        #expect(route.requestTimeout == .seconds(5))
    }

    @Test("a plugin given by name alone has no options")
    func pluginByName() throws {
        let route = try #require(try parseConfig(validYAML).routes.first)

        #expect(route.strategy.name == "round-robin")
        #expect(route.strategy.options == nil)
        #expect(try route.strategy.optionMapping().keys == [])
    }

    @Test("a plugin given as a mapping has its name and every other key as options")
    func pluginAsMapping() throws {
        let text = yaml(replacing: 9, with: """
                strategy:
                  name: least-pending
                  scan_limit: 4
                  away: avoid
            """)
        let route = try #require(try parseConfig(text).routes.first)

        #expect(route.strategy.name == "least-pending")
        var options = try route.strategy.optionMapping()
        #expect(options.keys == ["scan_limit", "away"])
        let scanLimit = options.optional("scan_limit")
        let away = options.optional("away")
        #expect(try scanLimit?.integer(in: 0...100) == 4)
        #expect(away?.line == 12)
        #expect(away?.path == "routes[0].strategy.away")
        let strategy = try BuiltInPlugins().makeStrategy(route.strategy, for: route)
        #expect((strategy as? LeastPendingStrategy<FastRandom>)?.scanLimit == 4)
    }

    @Test("a plugin mapping in flow style works the same")
    func pluginFlowMapping() throws {
        let text = yaml(replacing: 9, with: "    strategy: { name: sticky-by-sender, key: full, min_priority: 1 }")
        let route = try #require(try parseConfig(text).routes.first)
        let strategy = try BuiltInPlugins().makeStrategy(route.strategy, for: route)

        #expect((strategy as? StickyBySenderStrategy)?.key == .full)
    }

    @Test("every built-in strategy and encoder is found by its name")
    func everyPluginByName() throws {
        setenv("CONFIG_TEST_EVERY_KEY", "0123456789abcdef0123456789abcdef", 1)
        for name in BuiltInPlugins.strategyNames {
            let route = try #require(try parseConfig(yaml(replacing: 9, with: "    strategy: \(name)")).routes.first)
            #expect(try BuiltInPlugins().makeStrategy(route.strategy, for: route).name == name)
        }
        for name in BuiltInPlugins.encoderNames {
            let key = name == "hmac" || name == "sealed" ? ", key: { env: CONFIG_TEST_EVERY_KEY }" : ""
            let text = yaml(replacing: 10, with: "    encoder: { name: \(name)\(key) }")
            let route = try #require(try parseConfig(text).routes.first)
            #expect(try BuiltInPlugins().makeEncoder(route.encoder, for: route).name == name)
        }
    }

    @Test("the secret comes from an environment variable")
    func secretFromEnvironment() throws {
        setenv("CONFIG_TEST_SECRET", "from the environment", 1)
        let text = yaml(replacing: 7, with: "    secret: { env: CONFIG_TEST_SECRET }")
        let route = try #require(try parseConfig(text).routes.first)

        #expect(route.secret.value == "from the environment")
        #expect("\(route.secret)" == "<redacted>")
    }

    @Test("the secret comes from a file, by absolute path or relative to the configuration, trimmed")
    func secretFromFile() throws {
        let folder = try temporaryFolder("secret")
        try writeFile("  from a file\n", to: folder + "/component.secret")

        let absolute = yaml(replacing: 7, with: "    secret: { file: \(folder)/component.secret }")
        let relative = yaml(replacing: 7, with: "    secret: { file: component.secret }")

        #expect(try parseConfig(absolute).routes.first?.secret.value == "from a file")
        #expect(try parseConfig(relative, file: folder + "/router.yaml").routes.first?.secret.value == "from a file")
    }

    @Test("hmac keys come from the environment and from files, several for rotation")
    func hmacKeys() throws {
        let folder = try temporaryFolder("keys")
        try writeFile("fedcba9876543210fedcba9876543210\n", to: folder + "/old.key")
        setenv("CONFIG_TEST_NEW_KEY", "0123456789abcdef0123456789abcdef", 1)
        let text = yaml(replacing: 10, with: """
                encoder:
                  name: hmac
                  tag_bytes: 16
                  keys:
                    - { env: CONFIG_TEST_NEW_KEY }
                    - { file: old.key }
            """)

        let route = try #require(try parseConfig(text, file: folder + "/router.yaml").routes.first)
        let encoder = try BuiltInPlugins().makeEncoder(route.encoder, for: route)

        let old = HMACEncoder(keys: [Array("fedcba9876543210fedcba9876543210".utf8)], route: "proxy.example.org",
                              tagLength: 16)
        let sender = try JID("user@example.org/phone")
        #expect(try encoder.decode(try old.encode(sender)) == sender)
        #expect((encoder as? HMACEncoder)?.tagLength == 16)
    }

    @Test("several routes with different components are read in order")
    func severalRoutes() throws {
        let second = validYAML.replacingOccurrencesOfLine("proxy.example.org", with: "other.example.org")
            .split(separator: "\n").dropFirst(2).joined(separator: "\n")
        let config = try parseConfig(validYAML + "\n" + second)

        #expect(config.routes.map(\.name) == ["proxy.example.org", "other.example.org"])
    }
}

@Suite("Configuration: bad files fail with the file, line and key")
struct ConfigErrorTests {
    @Test("a misspelt route key names itself, its line, and the keys known there")
    func unknownRouteKey() {
        let error = failure(yaml(replacing: 11, with: "    request_timeot: 5s"))

        #expect(place(error) == "/etc/router/router.yaml:11 routes[0].request_timeot")
        #expect(error?.message.contains("unknown key") == true)
        #expect(error?.message.contains("request_timeout") == true)
    }

    /// `ConfigMapping.finish()` reports the value's position; a block mapping starts a line later.
    @Test("a misspelt key whose value is a block mapping is reported at the key's own line")
    func unknownKeyWithBlockValue() {
        let error = failure(yaml(replacing: 11, with: "    reconect:\n      initial: 1s\n      max: 5s"))

        #expect(place(error) == "/etc/router/router.yaml:11 routes[0].reconect")
    }

    @Test("misspelt keys are caught at the top, in the server mapping and in a plugin's options")
    func unknownKeysEverywhere() {
        #expect(place(failure(yaml(replacing: 1, with: "log_levl: info"))) == "/etc/router/router.yaml:1 log_levl")
        #expect(place(failure(yaml(replacing: 6, with: "      prot: 5347")))
            == "/etc/router/router.yaml:6 routes[0].server.prot")
        #expect(place(failure(yaml(replacing: 9, with: "    strategy: { name: random, scan_limit: 4 }")))
            == "/etc/router/router.yaml:9 routes[0].strategy.scan_limit")
    }

    @Test("a missing required key is named, at the line of the mapping that lacks it")
    func missingKey() {
        let error = failure(yaml(replacing: 8, with: ""))

        #expect(place(error) == "/etc/router/router.yaml:3 routes[0].target")
        #expect(error?.message == "is required")

        #expect(place(failure(yaml(replacing: 5, with: ""))) == "/etc/router/router.yaml:6 routes[0].server.host")
        #expect(place(failure("log_level: info\n")) == "/etc/router/router.yaml:1 routes")
    }

    @Test("a bad duration names the key and what a duration looks like")
    func badDuration() {
        for bad in ["5 parsecs", "fast", "-1s", "5ms", "inf", "nan"] {
            let error = failure(yaml(replacing: 11, with: "    request_timeout: \(bad)"))
            #expect(place(error) == "/etc/router/router.yaml:11 routes[0].request_timeout", "\(bad)")
        }
    }

    /// `Int64(value * 1e9)` traps for durations past about 292 years, and `value * scale` overflows
    /// for sizes past `Int.max`: the router crashes instead of reporting the key.
    @Test("a duration or size too large for the clock is refused, not a crash")
    func hugeNumbers() async {
        await #expect(processExitsWith: .success) {
            let text = """
                routes:
                  - { component: a.example, server: { host: h }, secret: s, target: t@example.org, \
                request_timeout: 1e10s }
                """
            do { _ = try RouterConfig.parse(text, file: "x.yaml", catalog: BuiltInPlugins()) } catch { return }
            exit(3)
        }
        await #expect(processExitsWith: .success) {
            let text = """
                routes:
                  - { component: a.example, server: { host: h }, secret: s, target: t@example.org, \
                max_stanza_size: 10000000000000000KiB }
                """
            do { _ = try RouterConfig.parse(text, file: "x.yaml", catalog: BuiltInPlugins()) } catch { return }
            exit(3)
        }
    }

    @Test("an unknown strategy is reported at the strategy's line, with the names that exist")
    func unknownStrategy() {
        let plain = failure(yaml(replacing: 9, with: "    strategy: round-robbin"))
        #expect(place(plain) == "/etc/router/router.yaml:9 routes[0].strategy")
        #expect(plain?.message.contains("unknown strategy 'round-robbin'") == true)
        #expect(plain?.message.contains("least-pending") == true)

        let mapping = failure(yaml(replacing: 9, with: "    strategy:\n      name: leastpending\n      scan_limit: 4"))
        #expect(place(mapping) == "/etc/router/router.yaml:10 routes[0].strategy")

        let encoder = failure(yaml(replacing: 10, with: "    encoder: rot13"))
        #expect(place(encoder) == "/etc/router/router.yaml:10 routes[0].encoder")
        #expect(encoder?.message.contains("unknown encoder 'rot13'") == true)
    }

    @Test("a bad option of a strategy is reported at the option")
    func badStrategyOption() {
        let cases = [
            ("    strategy: { name: least-pending, scan_limit: 1 }", "routes[0].strategy.scan_limit"),
            ("    strategy: { name: least-pending, scan_limit: many }", "routes[0].strategy.scan_limit"),
            ("    strategy: { name: random, away: sometimes }", "routes[0].strategy.away"),
            ("    strategy: { name: random, min_priority: 500 }", "routes[0].strategy.min_priority"),
            ("    strategy: { name: round-robin, weight_from_priority: maybe }",
             "routes[0].strategy.weight_from_priority"),
            ("    strategy: { name: sticky-by-sender, key: device }", "routes[0].strategy.key"),
            ("    strategy: { scan_limit: 4 }", "routes[0].strategy.name"),
        ]
        for (line, key) in cases {
            #expect(place(failure(yaml(replacing: 9, with: line))) == "/etc/router/router.yaml:9 \(key)", "\(line)")
        }
    }

    @Test("hmac without a key is refused at the encoder; keys are never written inline")
    func hmacWithoutKey() {
        let plain = failure(yaml(replacing: 10, with: "    encoder: hmac"))
        #expect(place(plain) == "/etc/router/router.yaml:10 routes[0].encoder")
        #expect(plain?.message.contains("key") == true)

        let options = failure(yaml(replacing: 10, with: "    encoder: { name: hmac, tag_bytes: 12 }"))
        #expect(place(options) == "/etc/router/router.yaml:10 routes[0].encoder")

        let inline = failure(yaml(replacing: 10, with: "    encoder: { name: hmac, key: 0123456789abcdef0123 }"))
        #expect(place(inline) == "/etc/router/router.yaml:10 routes[0].encoder.key")
        #expect(inline?.message.contains("0123456789abcdef") == false)

        setenv("CONFIG_TEST_SHORT_KEY", "short", 1)
        let short = failure(
            yaml(replacing: 10, with: "    encoder: { name: sealed, key: { env: CONFIG_TEST_SHORT_KEY } }"))
        #expect(place(short) == "/etc/router/router.yaml:10 routes[0].encoder.key")

        let unset = failure(
            yaml(replacing: 10, with: "    encoder: { name: hmac, key: { env: CONFIG_TEST_NEVER_SET } }"))
        #expect(place(unset) == "/etc/router/router.yaml:10 routes[0].encoder.key.env")
    }

    @Test("a second route for the same component is refused at that route")
    func duplicateComponent() {
        let second = validYAML.split(separator: "\n").dropFirst(2).joined(separator: "\n")
        let error = failure(validYAML + "\n" + second)

        #expect(place(error) == "/etc/router/router.yaml:12 routes[1]")
        #expect(error?.message.contains("already served by routes[0]") == true)
    }

    @Test("a key written twice in one mapping is refused at its second appearance")
    func duplicateKey() {
        let error = failure(yaml(replacing: 11, with: "    request_timeout: 5s\n    request_timeout: 6s"))

        #expect(place(error) == "/etc/router/router.yaml:12 routes[0].request_timeout")
        #expect(error?.message == "appears more than once")
    }

    @Test("a secret from a missing variable or file, or from both, is refused at its key")
    func badSecret() {
        #expect(place(failure(yaml(replacing: 7, with: "    secret: { env: CONFIG_TEST_NEVER_SET }")))
            == "/etc/router/router.yaml:7 routes[0].secret.env")
        #expect(place(failure(yaml(replacing: 7, with: "    secret: { file: /nonexistent/secret }")))
            == "/etc/router/router.yaml:7 routes[0].secret.file")
        #expect(place(failure(yaml(replacing: 7, with: "    secret: { file: a, env: B }")))
            == "/etc/router/router.yaml:7 routes[0].secret")
        #expect(place(failure(yaml(replacing: 7, with: "    secret: \"\"")))
            == "/etc/router/router.yaml:7 routes[0].secret")
    }

    @Test("addresses of the wrong kind are refused: a component with a localpart, a target with a resource")
    func wrongAddresses() {
        #expect(place(failure(yaml(replacing: 3, with: "  - component: me@proxy.example.org")))
            == "/etc/router/router.yaml:3 routes[0].component")
        #expect(place(failure(yaml(replacing: 8, with: "    target: service@example.org/a")))
            == "/etc/router/router.yaml:8 routes[0].target")
        #expect(place(failure(yaml(replacing: 8, with: "    target: a@@b")))
            == "/etc/router/router.yaml:8 routes[0].target")
        #expect(place(failure(yaml(replacing: 6, with: "      port: 70000")))
            == "/etc/router/router.yaml:6 routes[0].server.port")
    }

    @Test("a YAML syntax error is reported with its line")
    func syntaxError() {
        let error = failure(yaml(replacing: 6, with: "      port: [5347"))

        #expect(error?.file == "/etc/router/router.yaml")
        #expect((error?.line ?? 0) >= 6)
        #expect(error?.key == "")
    }
}

extension String {
    /// The lines of this text for which `keep` is true.
    fileprivate func replacingLines(keeping keep: (String) -> Bool) -> String {
        split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter(keep)
            .joined(separator: "\n")
    }

    /// This text with every line's `old` replaced by `new`.
    fileprivate func replacingOccurrencesOfLine(_ old: String, with new: String) -> String {
        split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.split(separator: old, omittingEmptySubsequences: false).joined(separator: new)
        }.joined(separator: "\n")
    }
}
