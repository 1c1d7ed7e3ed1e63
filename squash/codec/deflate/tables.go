package deflate

// Code tables of RFC 1951 section 3.2.5.

const (
	windowSize = 32768 // largest distance
	minMatch   = 3
	maxMatch   = 258

	numLitLen = 286 // literal/length symbols that may be coded (0..285)
	numDist   = 30
	numCL     = 19 // code-length code symbols
	endBlock  = 256

	maxCodeBits = 15 // literal/length and distance codes
	maxCLBits   = 7  // code-length code
)

// Length symbols 257+k code lengths lenBase[k] .. lenBase[k]+2^lenExtra[k]-1.
var (
	lenBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}

	distBase  = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}

	// clOrder is the order in which code-length code lengths are sent.
	clOrder = [numCL]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

var (
	// lenCode[l-3] is the length symbol index (symbol-257) for length l.
	// 258 always uses symbol 285: 284 with 31 extra could also spell it,
	// but zlib never writes that and some decoders reject it.
	lenCode [maxMatch - minMatch + 1]uint8
	// distLow[d-1] is the distance code for d <= 256, distHigh[(d-1)>>7]
	// for larger d (codes 16 and up span multiples of 128).
	distLow  [256]uint8
	distHigh [256]uint8
)

func init() {
	for k := 0; k < 28; k++ {
		for l := int(lenBase[k]); l < int(lenBase[k])+1<<lenExtra[k] && l < maxMatch; l++ {
			lenCode[l-minMatch] = uint8(k)
		}
	}
	lenCode[maxMatch-minMatch] = 28
	for c := 0; c < numDist; c++ {
		for d := int(distBase[c]); d < int(distBase[c])+1<<distExtra[c]; d++ {
			if d <= 256 {
				distLow[d-1] = uint8(c)
			} else {
				distHigh[(d-1)>>7] = uint8(c)
			}
		}
	}
}

// distCode returns the distance code of distance d (1..32768).
func distCode(d uint32) uint32 {
	if d <= 256 {
		return uint32(distLow[d-1])
	}
	return uint32(distHigh[(d-1)>>7])
}

// A token is a literal byte (value < 256) or a match: matchFlag, the length
// minus 3 in bits 16..23 and the distance minus 1 in bits 0..14.
const matchFlag = 1 << 31

func matchToken(length, dist int) uint32 {
	return matchFlag | uint32(length-minMatch)<<16 | uint32(dist-1)
}
