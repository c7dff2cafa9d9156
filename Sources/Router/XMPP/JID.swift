import CIDN
#if canImport(Glibc)
import Glibc
#endif

/// Why a string is not a JID.
public struct JIDError: Error, Equatable, CustomStringConvertible {
    public var input: String
    public var reason: String

    public var description: String { "invalid JID '\(input)': \(reason)" }
}

/// A prepared XMPP address (RFC 6122 / RFC 7622 §3): `[localpart@]domainpart[/resourcepart]`.
///
/// Each part is prepared with its stringprep profile (Nodeprep, Nameprep, Resourceprep) through
/// libidn and may be at most 1023 bytes after preparation. Two JIDs are equal when their prepared
/// forms are. A resourcepart may contain `/` and `@`: the address is split at the first `/`, and the
/// localpart at the last `@` before it.
///
/// The prepared address is kept whole, as text with the offsets of its separators: printing,
/// hashing and comparing a JID then cost nothing per part, and an address that arrives already
/// prepared (nearly all of them) is stored without a copy.
public struct JID: Hashable, Sendable, CustomStringConvertible {
    public static let maxPartLength = 1023

    /// The prepared form, `description`. A slice, so that `bare` shares the full JID's storage.
    private let text: Substring
    /// UTF-8 offset in `text` of the `@` that ends the localpart; -1 when there is none.
    private let localEnd: Int32
    /// UTF-8 offset in `text` of the `/` that starts the resourcepart; -1 when there is none.
    private let resourceSlash: Int32

    public var localpart: String? { localEnd < 0 ? nil : part(0, Int(localEnd)) }

    public var domainpart: String {
        part(localEnd < 0 ? 0 : Int(localEnd) + 1, resourceSlash < 0 ? text.utf8.count : Int(resourceSlash))
    }

    public var resourcepart: String? {
        resourceSlash < 0 ? nil : part(Int(resourceSlash) + 1, text.utf8.count)
    }

    /// Parses and prepares `string`.
    /// - Throws: `JIDError` for an empty or over-long part, or characters a profile prohibits.
    public init(_ string: String) throws {
        var input = string
        let scan = try input.withUTF8 { bytes in
            // libidn reads C strings: a NUL would silently cut a part short. (`memchr`: a generic
            // `utf8.contains(0)` cost as much as the rest of the parse.)
            if let base = bytes.baseAddress, memchr(base, 0, bytes.count) != nil {
                throw JIDError(input: string, reason: "contains U+0000")
            }
            return try JID.scanASCII(bytes, input: string)
        }
        guard let scan else {
            try self.init(preparingEachPart: string)
            return
        }
        if scan.lowercase || scan.domainEnd != scan.bareEnd {
            let prepared = input.withUTF8 { JID.rewrite($0, scan) }
            self.init(text: prepared[...], localEnd: Int32(scan.at),
                      resourceSlash: scan.slash < 0 ? -1 : Int32(scan.domainEnd))
        } else {
            self.init(text: string[...], localEnd: Int32(scan.at), resourceSlash: Int32(scan.slash))
        }
    }

    /// Parses `string` part by part, preparing each with libidn where it is not plain ASCII: the
    /// reference that the whole-address fast path of `init(_:)` must agree with.
    init(preparingEachPart string: String) throws {
        let utf8 = string.utf8
        let slash = utf8.firstIndex(of: UInt8(ascii: "/"))
        let bare = slash.map { utf8[..<$0] } ?? utf8[...]
        let at = bare.lastIndex(of: UInt8(ascii: "@"))

        var local: String?
        let domainBytes: Substring.UTF8View
        if let at {
            let localBytes = bare[..<at]
            guard !localBytes.isEmpty else { throw JIDError(input: string, reason: "empty localpart") }
            local = try JID.prepare(Substring(localBytes), profile: .nodeprep, in: string)
            domainBytes = Substring(bare[bare.index(after: at)...]).utf8
        } else {
            domainBytes = Substring(bare).utf8
        }
        var domain = Substring(domainBytes)
        if domain.hasSuffix("."), domain.count > 1 { domain = domain.dropLast() }
        guard !domain.isEmpty else { throw JIDError(input: string, reason: "empty domainpart") }

        var resource: String?
        if let slash {
            let resourceBytes = utf8[utf8.index(after: slash)...]
            guard !resourceBytes.isEmpty else { throw JIDError(input: string, reason: "empty resourcepart") }
            resource = try JID.prepare(Substring(resourceBytes), profile: .resourceprep, in: string)
        }

        // A label may not be empty, before preparation or after it (which may map characters to
        // nothing): preparing the result again must change nothing.
        let preparedDomain = try JID.prepare(domain, profile: .nameprep, in: string)
        if let problem = JID.domainShapeProblem(domain.utf8) ?? JID.domainShapeProblem(preparedDomain.utf8) {
            throw JIDError(input: string, reason: problem)
        }
        self.init(preparedLocalpart: local, domainpart: preparedDomain, resourcepart: resource)
    }

    /// What makes `domain` no domain name: an empty label (`a..b`, `.a`, `a.`), or brackets and
    /// colons other than around an IPv6 literal (`[` hex digits, `:` and `.` `]`). Checked before and
    /// after preparation, so that preparing a prepared JID changes nothing.
    static func domainShapeProblem<Bytes: BidirectionalCollection<UInt8>>(_ domain: Bytes) -> String? {
        let open = UInt8(ascii: "["), close = UInt8(ascii: "]"), colon = UInt8(ascii: ":"), dot = UInt8(ascii: ".")
        if domain.first == open {
            let inner = domain.dropFirst().dropLast()
            guard domain.count > 2, domain.last == close, inner.allSatisfy({ byte in
                let hexLetter = (byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x66
                return byte == colon || byte == dot || (byte >= 0x30 && byte <= 0x39) || hexLetter
            }) else { return "domainpart is not a valid IP literal" }
            return nil
        }
        if domain.contains(where: { $0 == open || $0 == close || $0 == colon }) {
            return "domainpart has a bracket or colon outside an IP literal"
        }
        var previous = dot
        for byte in domain {
            if byte == dot, previous == dot { return "domainpart has an empty label" }
            previous = byte
        }
        return previous == dot ? "domainpart has an empty label" : nil
    }

    /// Builds a JID from parts that are already prepared (such as those of another JID).
    public init(preparedLocalpart: String?, domainpart: String, resourcepart: String?) {
        var out = ""
        if let preparedLocalpart { out += preparedLocalpart + "@" }
        out += domainpart
        let domainEnd = out.utf8.count
        if let resourcepart { out += "/" + resourcepart }
        self.init(text: out[...], localEnd: preparedLocalpart.map { Int32($0.utf8.count) } ?? -1,
                  resourceSlash: resourcepart == nil ? -1 : Int32(domainEnd))
    }

    private init(text: Substring, localEnd: Int32, resourceSlash: Int32) {
        self.text = text
        self.localEnd = localEnd
        self.resourceSlash = resourceSlash
    }

    /// The JID without its resourcepart.
    public var bare: JID {
        guard resourceSlash >= 0 else { return self }
        let end = text.utf8.index(text.startIndex, offsetBy: Int(resourceSlash))
        return JID(text: text[..<end], localEnd: localEnd, resourceSlash: -1)
    }

    public var isBare: Bool { resourceSlash < 0 }

    /// This JID's bare form with `resource` as its resourcepart (already prepared).
    public func with(resource: String) -> JID {
        let bare = self.bare
        return JID(text: (String(bare.text) + "/" + resource)[...], localEnd: localEnd,
                   resourceSlash: Int32(bare.text.utf8.count))
    }

    public var description: String { String(text) }

    public static func == (lhs: JID, rhs: JID) -> Bool {
        lhs.localEnd == rhs.localEnd && lhs.resourceSlash == rhs.resourceSlash && lhs.text == rhs.text
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(text)
    }

    /// The text between two UTF-8 offsets of `text`, which fall on ASCII separators.
    private func part(_ start: Int, _ end: Int) -> String {
        let utf8 = text.utf8
        let from = utf8.index(utf8.startIndex, offsetBy: start)
        return String(text[from..<utf8.index(from, offsetBy: end - start)])
    }

    enum Profile {
        case nodeprep, nameprep, resourceprep

        var libidnName: String {
            switch self {
            case .nodeprep: "Nodeprep"
            case .nameprep: "Nameprep"
            case .resourceprep: "Resourceprep"
            }
        }

        var partName: String {
            switch self {
            case .nodeprep: "localpart"
            case .nameprep: "domainpart"
            case .resourceprep: "resourcepart"
            }
        }
    }

    /// Prepares one part, taking a fast path for plain ASCII that gives what the profile would.
    static func prepare(_ part: Substring, profile: Profile, in input: String) throws -> String {
        let prepared: String
        if let ascii = try preparedASCII(part, profile: profile, in: input) {
            prepared = ascii
        } else {
            prepared = try stringprep(String(part), profile: profile, in: input)
            // Nameprep lets any ASCII through; a domain name holds letters, digits, hyphens and dots
            // (RFC 6122 §2.2, STD3 rules), an IP literal brackets and colons (see `isDomainByte`).
            if profile == .nameprep, prepared.utf8.contains(where: { $0 < 0x80 && !isDomainByte($0) }) {
                throw JIDError(input: input, reason: "domainpart contains a character no domain name holds")
            }
        }
        guard !prepared.isEmpty else {
            throw JIDError(input: input, reason: "\(profile.partName) is empty after preparation")
        }
        guard prepared.utf8.count <= maxPartLength else {
            throw JIDError(input: input, reason: "\(profile.partName) longer than \(maxPartLength) bytes")
        }
        return prepared
    }

    /// The prepared form of an ASCII-only part, or nil to let libidn decide.
    ///
    /// For ASCII, the three profiles only fold case (Nodeprep and Nameprep) and prohibit some
    /// characters: controls everywhere, and in a localpart space and `"&'/:<>@` (RFC 3920 App. A.5).
    private static func preparedASCII(_ part: Substring, profile: Profile, in input: String) throws -> String? {
        var bytes = [UInt8]()
        bytes.reserveCapacity(part.utf8.count)
        for byte in part.utf8 {
            guard byte < 0x80 else { return nil }
            if byte < 0x20 || byte == 0x7F {
                throw JIDError(input: input, reason: "\(profile.partName) contains a control character")
            }
            switch profile {
            case .resourceprep:
                bytes.append(byte)
            case .nodeprep, .nameprep:
                if profile == .nodeprep, isProhibitedInLocalpart(byte) {
                    throw JIDError(input: input, reason: "localpart contains a prohibited character")
                }
                if profile == .nameprep, !isDomainByte(byte) { return nil }
                bytes.append(byte >= 0x41 && byte <= 0x5A ? byte + 0x20 : byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Where the separators of an all-ASCII address are, and whether preparing it changes it.
    struct ASCIIScan {
        /// Offsets of the `@` ending the localpart and of the first `/`; -1 when absent.
        var at = -1
        var slash = -1
        /// End of the bare JID (the slash, or the end), and of the domainpart once a trailing
        /// dot is dropped.
        var bareEnd = 0
        var domainEnd = 0
        /// Whether the localpart or the domainpart holds capitals to fold.
        var lowercase = false
    }

    /// Checks an address as the ASCII fast path of `prepare` would, part by part in the same
    /// order, so that it throws the same errors. Returns nil as soon as a byte needs libidn
    /// (non-ASCII anywhere, or a domainpart byte no domain name holds): the caller then prepares
    /// the address the slow way from the start.
    static func scanASCII(_ bytes: UnsafeBufferPointer<UInt8>, input: String) throws -> ASCIIScan? {
        var scan = ASCIIScan()
        guard let base = bytes.baseAddress else { throw JIDError(input: input, reason: "empty domainpart") }
        let count = bytes.count
        scan.slash = memchr(base, Int32(UInt8(ascii: "/")), count)
            .map { UnsafeRawPointer($0) - UnsafeRawPointer(base) } ?? -1
        scan.bareEnd = scan.slash < 0 ? count : scan.slash
        var index = scan.bareEnd - 1
        while index >= 0, base[index] != UInt8(ascii: "@") { index -= 1 }
        scan.at = index

        if scan.at >= 0 {
            guard scan.at > 0 else { throw JIDError(input: input, reason: "empty localpart") }
            for offset in 0..<scan.at {
                let byte = base[offset]
                if byte >= 0x80 || ASCIIClass.isIn(ASCIIClass.localpartSpecial, byte) {
                    guard byte < 0x80 else { return nil }
                    if byte < 0x20 || byte == 0x7F {
                        throw JIDError(input: input, reason: "localpart contains a control character")
                    }
                    throw JIDError(input: input, reason: "localpart contains a prohibited character")
                }
                if byte &- 0x41 < 26 { scan.lowercase = true }
            }
            try checkLength(scan.at, profile: .nodeprep, in: input)
        }
        let domainStart = scan.at + 1
        scan.domainEnd = scan.bareEnd
        if scan.domainEnd - domainStart > 1, base[scan.domainEnd - 1] == UInt8(ascii: ".") { scan.domainEnd -= 1 }
        guard scan.domainEnd > domainStart else { throw JIDError(input: input, reason: "empty domainpart") }

        if scan.slash >= 0 {
            guard scan.slash + 1 < count else { throw JIDError(input: input, reason: "empty resourcepart") }
            for offset in (scan.slash + 1)..<count {
                let byte = base[offset]
                if byte >= 0x80 || ASCIIClass.isIn(ASCIIClass.control, byte) {
                    guard byte < 0x80 else { return nil }
                    throw JIDError(input: input, reason: "resourcepart contains a control character")
                }
            }
            try checkLength(count - scan.slash - 1, profile: .resourceprep, in: input)
        }

        // Whether `domainShapeProblem` could find anything: a bracket or colon, or an empty label.
        var needsShapeCheck = base[scan.domainEnd - 1] == UInt8(ascii: ".")
        var previous = UInt8(ascii: ".")
        for offset in domainStart..<scan.domainEnd {
            let byte = base[offset]
            if !ASCIIClass.isIn(ASCIIClass.domain, byte) {
                guard byte < 0x80 else { return nil }
                if byte < 0x20 || byte == 0x7F {
                    throw JIDError(input: input, reason: "domainpart contains a control character")
                }
                return nil
            }
            if byte &- 0x41 < 26 { scan.lowercase = true }
            if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "]") || byte == UInt8(ascii: ":")
                || (byte == UInt8(ascii: ".") && previous == UInt8(ascii: ".")) {
                needsShapeCheck = true
            }
            previous = byte
        }
        try checkLength(scan.domainEnd - domainStart, profile: .nameprep, in: input)
        if needsShapeCheck,
           let problem = domainShapeProblem(UnsafeBufferPointer(rebasing: bytes[domainStart..<scan.domainEnd])) {
            throw JIDError(input: input, reason: problem)
        }
        return scan
    }

    /// The prepared text of an all-ASCII address that `scan` found needs changes: capitals of the
    /// localpart and domainpart folded, a trailing dot of the domainpart dropped.
    static func rewrite(_ bytes: UnsafeBufferPointer<UInt8>, _ scan: ASCIIScan) -> String {
        let restStart = scan.slash < 0 ? bytes.count : scan.slash
        let length = scan.domainEnd + (bytes.count - restStart)
        return String(unsafeUninitializedCapacity: length) { out in
            for offset in 0..<scan.domainEnd {
                let byte = bytes[offset]
                out[offset] = byte >= 0x41 && byte <= 0x5A ? byte + 0x20 : byte
            }
            for offset in restStart..<bytes.count { out[scan.domainEnd + offset - restStart] = bytes[offset] }
            return length
        }
    }

    private static func checkLength(_ length: Int, profile: Profile, in input: String) throws {
        guard length <= maxPartLength else {
            throw JIDError(input: input, reason: "\(profile.partName) longer than \(maxPartLength) bytes")
        }
    }

    /// Sets of ASCII bytes as 128-bit masks (bit n set: byte n is in the set), tested with a
    /// shift: cheaper per byte than a chain of comparisons, on the path every address takes.
    /// `JIDTests` checks each mask against the predicates it stands for.
    enum ASCIIClass {
        typealias Mask = (low: UInt64, high: UInt64)

        /// Controls: 0x00–0x1F and 0x7F.
        static let control: Mask = (0x0000_0000_FFFF_FFFF, 0x8000_0000_0000_0000)
        /// Controls, and what Nodeprep prohibits in ASCII (`isProhibitedInLocalpart`): space and `"&'/:<>@`.
        static let localpartSpecial: Mask = (0x5400_80C5_FFFF_FFFF, 0x8000_0000_0000_0001)
        /// What a domain name may hold (`isDomainByte`): letters, digits and `-._[]:`.
        static let domain: Mask = (0x07FF_6000_0000_0000, 0x07FF_FFFE_AFFF_FFFE)

        /// Whether `byte` is in `mask`; a byte from 0x80 never is.
        @inline(__always)
        static func isIn(_ mask: Mask, _ byte: UInt8) -> Bool {
            if byte < 64 { return mask.low >> UInt64(byte) & 1 == 1 }
            if byte < 128 { return mask.high >> UInt64(byte &- 64) & 1 == 1 }
            return false
        }
    }

    static func isProhibitedInLocalpart(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: " "), UInt8(ascii: "\""), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "/"),
             UInt8(ascii: ":"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "@"):
            return true
        default:
            return false
        }
    }

    static func isDomainByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "_"), UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: ":"):
            return true
        default:
            return false
        }
    }

    /// Runs a libidn stringprep profile (`stringprep_profile`) on `part`.
    private static func stringprep(_ part: String, profile: Profile, in input: String) throws -> String {
        var output: UnsafeMutablePointer<CChar>?
        let status = stringprep_profile(part, &output, profile.libidnName, Stringprep_profile_flags(rawValue: 0))
        defer { free(output) }
        guard status == Int32(STRINGPREP_OK.rawValue), let output else {
            let reason = status == Int32(STRINGPREP_CONTAINS_PROHIBITED.rawValue)
                || status == Int32(STRINGPREP_CONTAINS_UNASSIGNED.rawValue)
                ? "contains a prohibited character"
                : "cannot be prepared"
            throw JIDError(input: input, reason: "\(profile.partName) \(reason)")
        }
        return String(cString: output)
    }
}
