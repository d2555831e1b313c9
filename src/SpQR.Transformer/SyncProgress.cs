// IProgress that reports on the caller's thread, in order (Progress<T> posts to the thread pool, which reorders and
// outlives the call). Used by the quantizer's callers and the demo.
namespace SpQR.Transformer;

public sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
