import Glibc

/// Free and total bytes of the filesystem holding a path (statvfs).
enum DiskSpace {
    static func of(_ path: String) -> (free: Int?, total: Int?) {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return (nil, nil) }
        let block = Int(s.f_frsize > 0 ? s.f_frsize : s.f_bsize)
        return (Int(s.f_bavail) * block, Int(s.f_blocks) * block)
    }
}
