/// herd's release version, shared by every binary (`--version`) and the wire
/// hello of the proxy ↔ control protocol.
public enum HerdVersion {
    public static let current = "0.1.0"
}
