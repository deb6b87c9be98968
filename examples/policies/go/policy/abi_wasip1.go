//go:build wasip1

package policy

// The component exports of wit/policy.wit, by hand: the canonical ABI's
// memory layouts (examples/policies/c/abi.c lists every offset), a
// cabi_realloc over a static arena that never touches the Go heap (the
// host calls it while Go's runtime may be mid-allocation), and
// post-return functions that free the arena after each call.

import "unsafe"

var arena [256 << 10]byte
var arenaUsed uintptr

//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, newSize uint32) unsafe.Pointer {
	if newSize == 0 {
		return unsafe.Pointer(uintptr(align))
	}
	base := uintptr(unsafe.Pointer(&arena[0]))
	at := (base + arenaUsed + uintptr(align) - 1) &^ (uintptr(align) - 1)
	if at+uintptr(newSize) > base+uintptr(len(arena)) {
		panic("ramrod policy: the host's arguments exceed the arena")
	}
	arenaUsed = at + uintptr(newSize) - base
	p := unsafe.Pointer(at)
	if old != nil {
		n := min(oldSize, newSize)
		copy(unsafe.Slice((*byte)(p), n), unsafe.Slice((*byte)(old), n))
	}
	return p
}

func at(p unsafe.Pointer, off uintptr) unsafe.Pointer { return unsafe.Add(p, off) }
func u64(p unsafe.Pointer, off uintptr) uint64        { return *(*uint64)(at(p, off)) }
func u32(p unsafe.Pointer, off uintptr) uint32        { return *(*uint32)(at(p, off)) }
func u8(p unsafe.Pointer, off uintptr) uint8          { return *(*uint8)(at(p, off)) }
func f64(p unsafe.Pointer, off uintptr) float64       { return *(*float64)(at(p, off)) }
func opt(p unsafe.Pointer, off uintptr) *uint64 {
	if u8(p, off) == 0 {
		return nil
	}
	v := u64(p, off+8)
	return &v
}

// Return areas and the strings they point at: globals, which Go never
// moves, kept until the next call.
var (
	ret    [48]byte
	retStr string
)

func putStr(off uintptr, s string) {
	retStr = s
	*(*uint32)(unsafe.Pointer(&ret[off])) = uint32(uintptr(unsafe.Pointer(unsafe.StringData(s))))
	*(*uint32)(unsafe.Pointer(&ret[off+4])) = uint32(len(s))
}

//go:wasmexport ramrod:policy/policy@0.1.0#name
func exportName() unsafe.Pointer {
	putStr(0, Name())
	return unsafe.Pointer(&ret[0])
}

//go:wasmexport ramrod:policy/policy@0.1.0#configure
func exportConfigure(ptr unsafe.Pointer, n uint32) unsafe.Pointer {
	text := string(unsafe.Slice((*byte)(ptr), n))
	clear(ret[:])
	if err := Load(text); err != nil {
		ret[0] = 1
		putStr(4, err.Error())
	}
	return unsafe.Pointer(&ret[0])
}

//go:wasmexport ramrod:policy/policy@0.1.0#decide
func exportDecide(args unsafe.Pointer) unsafe.Pointer {
	l, s := args, at(args, 96)
	log := LogFacts{
		NowMs:         u64(l, 0),
		Role:          Role(u8(l, 8)),
		FirstIndex:    u64(l, 16),
		LastIndex:     u64(l, 24),
		Committed:     u64(l, 32),
		Applied:       u64(l, 40),
		Entries:       u64(l, 48),
		Bytes:         u64(l, 56),
		AppendRate:    f64(l, 64),
		ByteRate:      f64(l, 72),
		DiskFreeBytes: u64(l, 88),
	}
	list, n := unsafe.Pointer(uintptr(u32(l, 80))), uintptr(u32(l, 84))
	log.Followers = make([]FollowerFacts, n)
	for i := range n {
		f := at(list, 48*i)
		log.Followers[i] = FollowerFacts{
			ID:               u64(f, 0),
			Matched:          opt(f, 8),
			LagEntries:       u64(f, 24),
			SnapshotInFlight: opt(f, 32),
		}
	}
	snap := SnapshotFacts{
		LastIndex:    opt(s, 0),
		AgeMs:        u64(s, 16),
		EntriesSince: u64(s, 24),
		BytesSince:   u64(s, 32),
		ChainLength:  u32(s, 40),
		ChainBytes:   u64(s, 48),
		BaseBytes:    u64(s, 56),
		StateKeys:    u64(s, 64),
		StateBytes:   u64(s, 72),
		DirtyKeys:    u64(s, 80),
		LastBuildMs:  u64(s, 88),
		InProgress:   u8(s, 96) != 0,
	}
	var d Decision
	if registered.policy != nil {
		d = registered.policy.Decide(&log, &snap)
	} else {
		d = Decision{NextCheckMs: 1000, Reason: "not configured"}
	}
	clear(ret[:])
	if d.Snapshot != nil {
		ret[0], ret[1] = 1, byte(*d.Snapshot)
	}
	if d.PurgeUpTo != nil {
		ret[8] = 1
		*(*uint64)(unsafe.Pointer(&ret[16])) = *d.PurgeUpTo
	}
	if d.RetainSnapshots != nil {
		ret[24] = 1
		*(*uint32)(unsafe.Pointer(&ret[28])) = *d.RetainSnapshots
	}
	*(*uint32)(unsafe.Pointer(&ret[32])) = d.NextCheckMs
	putStr(36, d.Reason)
	return unsafe.Pointer(&ret[0])
}

//go:wasmexport cabi_post_ramrod:policy/policy@0.1.0#name
func postName(unsafe.Pointer) { arenaUsed = 0 }

//go:wasmexport cabi_post_ramrod:policy/policy@0.1.0#configure
func postConfigure(unsafe.Pointer) { arenaUsed = 0 }

//go:wasmexport cabi_post_ramrod:policy/policy@0.1.0#decide
func postDecide(unsafe.Pointer) { arenaUsed = 0 }
