package deflate

// priceModel estimates what literals and matches will cost, in 1/16 bits,
// from the statistics of the tokens emitted so far in this input (seeded
// from a sample of its bytes), so the lazy parser can weigh a short match
// against the literals it replaces. Prices are refreshed as each segment
// of the parse (see split.go) ends; in between they are table lookups.
type priceModel struct {
	litCnt  [256]uint32
	lenCnt  [29]uint32
	distCnt [30]uint32

	lit  [256]uint32
	len  [29]uint32 // length symbol plus extra bits
	dist [30]uint32 // distance symbol plus extra bits
}

const (
	seedBytes  = 2048
	priceScale = 16
)

func (pm *priceModel) init(src []byte) {
	// Seed the literal counts from a sample of the input: about
	// seedBytes bytes in runs of 64 spread over it, weighed like half as
	// many literals.
	pm.litCnt = [256]uint32{}
	step := max(64, len(src)/(seedBytes/64))
	for i := 0; i < len(src); i += step {
		for _, b := range src[i:min(i+64, len(src))] {
			pm.litCnt[b]++
		}
	}
	for i := range pm.litCnt {
		pm.litCnt[i] = pm.litCnt[i]/2 + 1
	}
	for i := range pm.lenCnt {
		pm.lenCnt[i] = uint32(32 >> (i / 4))
	}
	for i := range pm.distCnt {
		pm.distCnt[i] = uint32(4 + i)
	}
	pm.refresh()
}

// refresh recomputes the prices from the counts.
func (pm *priceModel) refresh() {
	total := uint32(0)
	for _, c := range pm.litCnt {
		total += c
	}
	for _, c := range pm.lenCnt {
		total += c
	}
	lt := log2(total)
	for i, c := range pm.litCnt {
		pm.lit[i] = symPrice(lt, c)
	}
	for i, c := range pm.lenCnt {
		pm.len[i] = symPrice(lt, c) + uint32(lenExtra[i])*priceScale
	}
	total = 0
	for _, c := range pm.distCnt {
		total += c
	}
	lt = log2(total)
	for i, c := range pm.distCnt {
		pm.dist[i] = symPrice(lt, c) + uint32(distExtra[i])*priceScale
	}
}

// symPrice is the price of a symbol seen c times out of 2^lt.
func symPrice(lt float32, c uint32) uint32 {
	if c == 0 {
		return maxCodeBits * priceScale
	}
	return uint32(min((lt-log2(c))*priceScale, maxCodeBits*priceScale)) + 1
}

func (pm *priceModel) match(l, d int) uint32 {
	return pm.len[lenCode[l-minMatch]] + pm.dist[distCode(uint32(d))]
}

func (pm *priceModel) lits(b []byte) uint32 {
	p := uint32(0)
	for _, c := range b {
		p += pm.lit[c]
	}
	return p
}

// absorb adds the counts of a finished segment and refreshes the prices.
func (pm *priceModel) absorb(h *histogram) {
	for i := range pm.litCnt {
		pm.litCnt[i] += h.lit[i]
	}
	for i := range pm.lenCnt {
		pm.lenCnt[i] += h.lit[257+i]
	}
	for i := range pm.distCnt {
		pm.distCnt[i] += h.dist[i]
	}
	pm.refresh()
}
