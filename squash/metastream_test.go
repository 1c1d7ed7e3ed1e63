package squash

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/squashportage/squashportage/squash/codec"
)

// TestMetaPairPatches checks patch fields where they land: inside a block,
// straddling two blocks, and naming blocks the other stream seals later
// than the field's own block (the packer must hold the block back).
func TestMetaPairPatches(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   int // offset of the field in the inode stream
	}{
		{"inside", 100},
		{"straddling", MetadataSize - 2},
		{"block end", MetadataSize - 4},
		{"next block", MetadataSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, stored := range []bool{true, false} {
				var enc codec.Encoder
				if !stored {
					var err error
					if enc, err = (codec.Config{ID: codec.Gzip, BlockSize: DefaultBlockSize}).NewEncoder(); err != nil {
						t.Fatal(err)
					}
				}
				inodes, dirs, pk := newMetaPair(enc, stored)
				// Three directory blocks; the field names the third,
				// which begins only after the field's block is sealed.
				in := bytes.Repeat([]byte{0xaa}, 2*MetadataSize+10)
				inodes.write(in)
				inodes.patches = append(inodes.patches, patch{at: tc.at, block: 2})
				dirs.write(bytes.Repeat([]byte{1}, MetadataSize))
				inodes.seal(false)
				dirs.seal(false)
				dirs.write(bytes.Repeat([]byte{2}, MetadataSize+7))
				inodes.seal(true)
				dirs.seal(true)
				if err := pk.close(); err != nil {
					t.Fatal(err)
				}
				var out []byte
				pk.streams[inodes.id].out.pieces(func(p []byte) error { out = append(out, p...); return nil })
				got := decodeStream(t, out)
				want := append([]byte(nil), in...)
				binary.LittleEndian.PutUint32(want[tc.at:], uint32(pk.streams[dirs.id].starts[2]))
				if !bytes.Equal(got, want) {
					t.Errorf("stored %v: the inode stream differs from the patched input", stored)
				}
				if pk.streams[dirs.id].starts[2] == 0 {
					t.Errorf("stored %v: block 2 of the directories starts at 0", stored)
				}
			}
		})
	}
}

// TestMetaPairWaiting: blocks that wait for each other in a circle are an
// error at close, not a hang.
func TestMetaPairWaiting(t *testing.T) {
	inodes, dirs, pk := newMetaPair(nil, true)
	inodes.write(make([]byte, 10))
	inodes.patches = append(inodes.patches, patch{at: 0, block: 1})
	dirs.write(make([]byte, 10))
	dirs.patches = append(dirs.patches, patch{at: 0, block: 1})
	inodes.seal(true)
	dirs.seal(true)
	if err := pk.close(); err == nil {
		t.Fatal("close: no error for streams that wait for each other")
	}
}

func decodeStream(t *testing.T, out []byte) []byte {
	t.Helper()
	dec, err := (codec.Config{ID: codec.Gzip, BlockSize: DefaultBlockSize}).NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for len(out) > 0 {
		hdr := binary.LittleEndian.Uint16(out)
		n := int(hdr &^ metaUncompressed)
		body := out[2 : 2+n]
		out = out[2+n:]
		if hdr&metaUncompressed != 0 {
			all = append(all, body...)
			continue
		}
		buf := make([]byte, MetadataSize)
		m, err := dec.Decompress(buf, body)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, buf[:m]...)
	}
	return all
}
