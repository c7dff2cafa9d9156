// libFuzzer harness: JID parsing and preparation (`JID(_:)`, libidn stringprep behind it).
//
// Input: the text of an address, as UTF-8 (invalid bytes become U+FFFD, as when a String is made
// from the wire). Checked, besides "no crash":
// 1. An accepted JID has non-empty parts of at most 1023 bytes.
// 2. Preparation is stable: the prepared text parses again to the same JID and the same text. The
//    JAT decoders rely on this (they refuse a JAT whose JID does not print back as it came).
// 3. U+0000, which every stringprep profile prohibits, is never accepted.
// 4. For each part that is plain ASCII, the fast path gives what libidn's profile gives, with the
//    router's own rules on top: no empty label in a domainpart, brackets and colons only around
//    an IPv6 literal (`JID.domainShapeProblem`).
// 5. The whole-address fast path of `JID(_:)` agrees with `JID(preparingEachPart:)`, its reference.
import CIDN
import Glibc
import Plugins
@testable import Router

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJID(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    // The NUL guard sits in `init(_:)` only; the reference is compared on the rest.
    let reference = text.utf8.contains(0) ? try? JID(text) : try? JID(preparingEachPart: text)
    guard let jid = try? JID(text) else {
        if let reference { fatalError("JID refused '\(text)', which the reference prepares as '\(reference)'") }
        compareWithLibIDN(text, accepted: nil)
        return 0
    }
    guard let reference, reference == jid, reference.description == jid.description else {
        fatalError("JID prepared '\(text)' as '\(jid)', the reference as '\(String(describing: reference))'")
    }
    if text.utf8.contains(0) {
        fatalError("a JID with U+0000 was accepted: \(Array(text.utf8)) became '\(jid)'")
    }
    for part in [jid.localpart, jid.domainpart, jid.resourcepart].compactMap({ $0 }) {
        if part.isEmpty || part.utf8.count > JID.maxPartLength {
            fatalError("a part of \(part.utf8.count) bytes was accepted in '\(jid)'")
        }
    }
    let printed = jid.description
    guard let again = try? JID(printed) else {
        fatalError("the prepared JID '\(printed)' (\(Array(printed.utf8))) does not parse again; input \(Array(text.utf8))")
    }
    if again != jid || again.description != printed {
        fatalError("preparation is not stable: '\(printed)' became '\(again)'; input \(Array(text.utf8))")
    }
    compareWithLibIDN(text, accepted: jid)
    return 0
}

/// Splits as `JID(_:)` documents (at the first `/`, the localpart at the last `@` before it) and,
/// when every part is ASCII, prepares each part with libidn directly.
private func compareWithLibIDN(_ text: String, accepted: JID?) {
    let bytes = Array(text.utf8)
    guard bytes.allSatisfy({ $0 > 0 && $0 < 0x80 }) else { return }
    let slash = bytes.firstIndex(of: UInt8(ascii: "/"))
    let bare = Array(bytes[..<(slash ?? bytes.count)])
    let at = bare.lastIndex(of: UInt8(ascii: "@"))
    let local = at.map { Array(bare[..<$0]) }
    var domain = at.map { Array(bare[($0 + 1)...]) } ?? bare
    if domain.last == UInt8(ascii: "."), domain.count > 1 { domain.removeLast() }
    let resource = slash.map { Array(bytes[($0 + 1)...]) }

    let preparedLocal = local.map { prepare($0, "Nodeprep") }
    let preparedDomain = prepare(domain, "Nameprep").flatMap { prepared in
        isHostname(prepared) && JID.domainShapeProblem(prepared.utf8) == nil ? prepared : nil
    }
    let preparedResource = resource.map { prepare($0, "Resourceprep") }
    let libidnAccepts = preparedDomain != nil && (preparedLocal.map { $0 != nil } ?? true)
        && (preparedResource.map { $0 != nil } ?? true)
    guard let accepted else {
        if libidnAccepts {
            fatalError("JID refused '\(text)', which libidn prepares as \(String(describing: preparedLocal)) "
                       + "\(String(describing: preparedDomain)) \(String(describing: preparedResource))")
        }
        return
    }
    guard libidnAccepts else { fatalError("JID accepted '\(text)' as '\(accepted)', which libidn refuses") }
    if accepted.localpart != preparedLocal.flatMap({ $0 }) || accepted.domainpart != preparedDomain
        || accepted.resourcepart != preparedResource.flatMap({ $0 }) {
        fatalError("JID prepared '\(text)' as '\(accepted)'; libidn gives \(String(describing: preparedLocal)) "
                   + "\(String(describing: preparedDomain)) \(String(describing: preparedResource))")
    }
}

/// libidn's `stringprep_profile`; nil when the profile refuses or the result is empty or too long.
private func prepare(_ part: [UInt8], _ profile: String) -> String? {
    guard !part.isEmpty else { return nil }
    var output: UnsafeMutablePointer<CChar>?
    let status = stringprep_profile(String(decoding: part, as: UTF8.self), &output, profile,
                                    Stringprep_profile_flags(rawValue: 0))
    defer { free(output) }
    guard status == Int32(STRINGPREP_OK.rawValue), let output else { return nil }
    let prepared = String(cString: output)
    guard !prepared.isEmpty, prepared.utf8.count <= JID.maxPartLength else { return nil }
    return prepared
}

/// The ASCII a domainpart may hold: letters, digits, `-`, `.`, `_`, and `[`, `]`, `:` for IP literals.
private func isHostname(_ text: String) -> Bool {
    text.utf8.allSatisfy { byte in
        byte >= 0x80 || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
            || byte == 0x2D || byte == 0x2E || byte == 0x5F || byte == 0x5B || byte == 0x5D || byte == 0x3A
    }
}
