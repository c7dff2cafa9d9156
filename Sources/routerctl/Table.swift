import Foundation

/// Prints rows as columns aligned on the widest cell, with a header.
struct Table {
    var header: [String]
    var rows: [[String]] = []

    func render() -> String {
        let widths = header.indices.map { column in
            ([header[column]] + rows.map { column < $0.count ? $0[column] : "" }).map(\.count).max() ?? 0
        }
        func line(_ cells: [String]) -> String {
            var out = ""
            for (column, cell) in cells.enumerated() {
                let width = widths[column] - cell.count + 2
                let padding = column == cells.count - 1 ? "" : String(repeating: " ", count: width)
                out += cell + padding
            }
            return out
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }
}

/// Text for a JSON value in a table cell: `-` for null, numbers without needless decimals.
func cell(_ value: Any?) -> String {
    switch value {
    case nil, is NSNull: return "-"
    case let number as NSNumber:
        if String(cString: number.objCType) == "c" { return number.boolValue ? "yes" : "no" }
        let double = number.doubleValue
        if double == double.rounded(), abs(double) < 1e15 { return String(Int(double)) }
        return String(format: "%.3f", double)
    case let text as String: return text
    default: return "\(value ?? "-")"
    }
}

/// Pretty JSON for `--json`.
func jsonText(_ object: Any) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]) else {
        return "{}"
    }
    return String(decoding: data, as: UTF8.self)
}
