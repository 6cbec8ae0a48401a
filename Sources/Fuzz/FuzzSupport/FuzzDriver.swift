// What every fuzz target shares: handing the command line to the fuzzing engine (fuzzing builds), or
// replaying a corpus through the target (plain builds, where it is a regression run of the seeds).
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

#if FUZZING
    /// The engine's entry, for programs that keep their own `main`.
    @_extern(c, "LLVMFuzzerRunDriver")
    func runFuzzingEngine(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ test: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
    ) -> CInt
#else
    import Foundation
#endif

public enum FuzzDriver {
    #if FUZZING
        /// The package build renames every executable's entry point, which hides the engine's own `main`;
        /// a target's `main` hands the command line to the engine with this instead.
        public static func runEngine(_ test: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> Never {
            var argc = CommandLine.argc
            var argv = CommandLine.unsafeArgv
            exit(runFuzzingEngine(&argc, &argv, test))
        }
    #else
        /// Replays every file given on the command line (files or folders; default `defaultPath`) through `body`.
        public static func replay(name: String, defaultPath: String, _ body: (UnsafeRawBufferPointer) -> Void) {
            let paths = CommandLine.arguments.dropFirst()
            var count = 0
            for path in paths.isEmpty ? [defaultPath] : Array(paths) {
                guard let files = inputFiles(path) else {
                    print("\(name): no such file or folder: \(path)")
                    exit(1)
                }
                for file in files {
                    guard let data = FileManager.default.contents(atPath: file) else {
                        print("\(name): cannot read \(file)")
                        exit(1)
                    }
                    data.withUnsafeBytes { body($0) }
                    count += 1
                }
            }
            print("\(name): replayed \(count) inputs")
        }

        static func inputFiles(_ path: String) -> [String]? {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { return nil }
            guard isFolder.boolValue else { return [path] }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            let folder = path.hasSuffix("/") ? path : path + "/"
            return names.filter { !$0.hasPrefix(".") }.sorted().map { folder + $0 }
        }
    #endif
}
