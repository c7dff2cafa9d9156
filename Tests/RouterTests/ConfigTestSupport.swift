import Plugins
@testable import Router
import Testing

// Configuration helpers shared by the suites that check what a file is refused for.

/// A valid file of one route; line numbers matter to the tests below.
let validYAML = """
    log_level: info
    routes:
      - component: proxy.example.org
        server:
          host: 127.0.0.1
          port: 5347
        secret: s3cret
        target: service@example.org
        strategy: round-robin
        encoder: base64url
        request_timeout: 5s
    """

/// `validYAML` with line `line` (1-based) replaced by `replacement`, which may span several lines.
func yaml(replacing line: Int, with replacement: String) -> String {
    var lines = validYAML.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    lines[line - 1] = replacement
    return lines.joined(separator: "\n")
}

func parseConfig(_ text: String, file: String = "/etc/router/router.yaml") throws(ConfigError) -> RouterConfig {
    try RouterConfig.parse(text, file: file, catalog: BuiltInPlugins())
}

/// The error `text` fails with, or nil (and an issue) when it parses.
func failure(_ text: String) -> ConfigError? {
    do throws(ConfigError) {
        _ = try parseConfig(text)
        Issue.record("the file parsed, though it should not have:\n\(text)")
        return nil
    } catch {
        return error
    }
}
