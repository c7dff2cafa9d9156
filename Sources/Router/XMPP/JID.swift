import CIDN

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
public struct JID: Hashable, Sendable, CustomStringConvertible {
    public static let maxPartLength = 1023

    public let localpart: String?
    public let domainpart: String
    public let resourcepart: String?

    /// Parses and prepares `string`.
    /// - Throws: `JIDError` for an empty or over-long part, or characters a profile prohibits.
    public init(_ string: String) throws {
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

        self.localpart = local
        self.domainpart = try JID.prepare(domain, profile: .nameprep, in: string)
        self.resourcepart = resource
    }

    /// Builds a JID from parts that are already prepared (such as those of another JID).
    public init(preparedLocalpart: String?, domainpart: String, resourcepart: String?) {
        self.localpart = preparedLocalpart
        self.domainpart = domainpart
        self.resourcepart = resourcepart
    }

    /// The JID without its resourcepart.
    public var bare: JID { JID(preparedLocalpart: localpart, domainpart: domainpart, resourcepart: nil) }

    public var isBare: Bool { resourcepart == nil }

    /// This JID's bare form with `resource` as its resourcepart (already prepared).
    public func with(resource: String) -> JID {
        JID(preparedLocalpart: localpart, domainpart: domainpart, resourcepart: resource)
    }

    public var description: String {
        var out = ""
        if let localpart { out += localpart + "@" }
        out += domainpart
        if let resourcepart { out += "/" + resourcepart }
        return out
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

    private static func isProhibitedInLocalpart(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: " "), UInt8(ascii: "\""), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "/"),
             UInt8(ascii: ":"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "@"):
            return true
        default:
            return false
        }
    }

    private static func isDomainByte(_ byte: UInt8) -> Bool {
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
