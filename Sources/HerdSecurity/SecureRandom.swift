internal import CCrypto

/// Random bytes for secrets (client keys), from OpenSSL's CSPRNG.
public enum SecureRandom {
    /// `count` random bytes; nil only if OpenSSL cannot seed (then no secret should be made).
    public static func bytes(_ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: max(0, count))
        let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(clamping: $0.count)) }
        return ok == 1 ? out : nil
    }
}
