import CYAML

/// A node of a parsed YAML document, with where it was written.
public struct YAMLNode: Sendable {
    public enum Value: Sendable {
        case scalar(String)
        case mapping([(key: YAMLNode, value: YAMLNode)])
        case sequence([YAMLNode])
    }

    public var value: Value
    /// 1-based line and column of the node's first character.
    public var line: Int
    public var column: Int
    /// Whether a scalar was quoted (`"30"` is text, `30` may be a number).
    public var quoted: Bool

    public var scalar: String? {
        if case .scalar(let text) = value { return text }
        return nil
    }

    /// The node's content written in one canonical line, to tell whether two nodes say the same.
    public var canonical: String {
        switch value {
        case .scalar(let text): return quoted ? "\"\(text)\"" : text
        case .sequence(let items): return "[" + items.map(\.canonical).joined(separator: ",") + "]"
        case .mapping(let pairs):
            return "{" + pairs.map { "\($0.key.canonical):\($0.value.canonical)" }.sorted().joined(separator: ",") + "}"
        }
    }

    /// A short name of the node's kind, for error messages.
    public var kindName: String {
        switch value {
        case .scalar: "a scalar"
        case .mapping: "a mapping"
        case .sequence: "a list"
        }
    }
}

/// Failure to read YAML at all (syntax), before any key is looked at.
public struct YAMLSyntaxError: Error, Sendable {
    public var line: Int
    public var column: Int
    public var problem: String
}

/// Parses YAML text with libyaml's document loader (`yaml_parser_load`).
public enum YAMLDocument {
    /// Upper bound on nodes visited, so that aliases cannot expand a small file into a huge tree.
    static let maxNodes = 100_000

    /// The root node of the first document, or nil for an empty file.
    public static func parse(_ text: String) throws(YAMLSyntaxError) -> YAMLNode? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw YAMLSyntaxError(line: 1, column: 1, problem: "cannot initialize the YAML parser")
        }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        var document = yaml_document_t()
        let loaded = bytes.withUnsafeBufferPointer { buffer -> Int32 in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            return yaml_parser_load(&parser, &document)
        }
        guard loaded == 1 else {
            let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
            let mark = parser.problem_mark
            throw YAMLSyntaxError(line: Int(mark.line) + 1, column: Int(mark.column) + 1, problem: problem)
        }
        defer { yaml_document_delete(&document) }
        guard yaml_document_get_root_node(&document) != nil else { return nil }
        var visited = 0
        return try convert(index: 1, in: &document, visited: &visited, depth: 0)
    }

    /// Deeper nesting than any configuration needs is refused; so is an alias to a node that
    /// contains it, which would otherwise be followed forever.
    static let maxDepth = 64

    private static func convert(
        index: Int32, in document: inout yaml_document_t, visited: inout Int, depth: Int
    ) throws(YAMLSyntaxError) -> YAMLNode {
        visited += 1
        guard let node = yaml_document_get_node(&document, index) else {
            throw YAMLSyntaxError(line: 1, column: 1, problem: "dangling node reference")
        }
        let line = Int(node.pointee.start_mark.line) + 1
        let column = Int(node.pointee.start_mark.column) + 1
        guard visited <= maxNodes else {
            throw YAMLSyntaxError(line: line, column: column, problem: "document too large (aliases?)")
        }
        guard depth <= maxDepth else {
            throw YAMLSyntaxError(line: line, column: column,
                                  problem: "nested more than \(maxDepth) levels deep, or an alias refers to itself")
        }
        switch node.pointee.type {
        case YAML_SCALAR_NODE:
            let scalar = node.pointee.data.scalar
            let text = String(decoding: UnsafeBufferPointer(start: scalar.value, count: scalar.length), as: UTF8.self)
            let quoted = [YAML_SINGLE_QUOTED_SCALAR_STYLE, YAML_DOUBLE_QUOTED_SCALAR_STYLE, YAML_LITERAL_SCALAR_STYLE,
                          YAML_FOLDED_SCALAR_STYLE].contains(scalar.style)
            return YAMLNode(value: .scalar(text), line: line, column: column, quoted: quoted)
        case YAML_SEQUENCE_NODE:
            var items: [YAMLNode] = []
            var item = node.pointee.data.sequence.items.start
            let end = node.pointee.data.sequence.items.top
            while let current = item, current != end {
                items.append(try convert(index: current.pointee, in: &document, visited: &visited, depth: depth + 1))
                item = current + 1
            }
            return YAMLNode(value: .sequence(items), line: line, column: column, quoted: false)
        case YAML_MAPPING_NODE:
            var pairs: [(key: YAMLNode, value: YAMLNode)] = []
            var pair = node.pointee.data.mapping.pairs.start
            let end = node.pointee.data.mapping.pairs.top
            while let current = pair, current != end {
                let key = try convert(index: current.pointee.key, in: &document, visited: &visited, depth: depth + 1)
                let value = try convert(index: current.pointee.value, in: &document, visited: &visited,
                                        depth: depth + 1)
                pairs.append((key, value))
                pair = current + 1
            }
            return YAMLNode(value: .mapping(pairs), line: line, column: column, quoted: false)
        default:
            return YAMLNode(value: .scalar(""), line: line, column: column, quoted: false)
        }
    }
}
