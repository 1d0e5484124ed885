// A Java program for the java_perfmap test: hot, named methods the JIT compiles.
// Run with -XX:+PreserveFramePointer; args[0]: seconds to run at most.
public class Hot {
    static long sink;

    static long leafWork(int n) {
        long s = 0;
        for (int i = 0; i < n; i++) {
            s = (s + (long) i * i) % 1000003;
        }
        return s;
    }

    static long middleWork() {
        long s = 0;
        for (int i = 0; i < 100; i++) {
            s += leafWork(2000 + i);
        }
        return s;
    }

    public static void main(String[] args) throws Exception {
        long end = System.currentTimeMillis() + 1000L * Long.parseLong(args.length > 0 ? args[0] : "60");
        System.out.println("ready");
        System.out.flush();
        while (System.currentTimeMillis() < end) {
            sink += middleWork();
        }
    }
}
