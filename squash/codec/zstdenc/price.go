package zstdenc

// priceModel estimates the cost in 1/256 bits of coding each symbol, from
// running frequencies of what the parse has committed so far in the block.
// Each block is coded independently, so the model starts from the block's
// byte histogram and generic priors rather than from earlier blocks.
//
// A symbol's price is log2(sum) - log2(freq): the per-symbol weights are
// updated as each one changes, and the per-alphabet log2(sum) after each
// commit, so prices always match the statistics without a full recompute.
type priceModel struct {
	litFreq                     [256]uint32
	llFreq                      [maxLLCode + 1]uint32
	mlFreq                      [maxMLCode + 1]uint32
	ofFreq                      [maxOFCode + 1]uint32
	litSum, llSum, mlSum, ofSum uint32

	// weights: log2(freq), minus extra bits for LL and ML
	litW [256]int32
	llW  [maxLLCode + 1]int32
	mlW  [maxMLCode + 1]int32
	ofW  [maxOFCode + 1]int32
	// log2 of the sums
	litBase, llBase, mlBase, ofBase int32
}

// Priors for literal-length and offset codes: short literal runs and repeat
// offsets dominate real data.
var (
	baseLLFreq = [maxLLCode + 1]uint32{4, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	baseOFFreq = [maxOFCode + 1]uint32{6, 2, 1, 1, 2, 3, 4, 4, 4, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
)

// litInitShift scales the block's byte histogram into the literal prior;
// literals the parse commits then count 2 each.
const litInitShift = 4

func (pm *priceModel) initBlock(blk []byte) {
	var hist [256]uint32
	for _, b := range blk {
		hist[b]++
	}
	pm.litSum = 0
	for i, c := range hist {
		f := 1 + c>>litInitShift
		pm.litFreq[i] = f
		pm.litW[i] = int32(log2Fix(f))
		pm.litSum += f
	}
	pm.llFreq = baseLLFreq
	pm.llSum = 0
	for i, f := range pm.llFreq {
		pm.llSum += f
		pm.llW[i] = int32(log2Fix(f)) - int32(llBits[i])<<8
	}
	pm.ofFreq = baseOFFreq
	pm.ofSum = 0
	for i, f := range pm.ofFreq {
		pm.ofSum += f
		pm.ofW[i] = int32(log2Fix(f))
	}
	for i := range pm.mlFreq {
		pm.mlFreq[i] = 1
		pm.mlW[i] = -int32(mlBits[i]) << 8
	}
	pm.mlSum = maxMLCode + 1
	pm.bases()
}

func (pm *priceModel) bases() {
	pm.litBase = int32(log2Fix(pm.litSum))
	pm.llBase = int32(log2Fix(pm.llSum))
	pm.mlBase = int32(log2Fix(pm.mlSum))
	pm.ofBase = int32(log2Fix(pm.ofSum))
}

func (pm *priceModel) addLits(lits []byte) {
	for _, b := range lits {
		f := pm.litFreq[b] + 2
		pm.litFreq[b] = f
		pm.litW[b] = int32(log2Fix(f))
	}
	pm.litSum += 2 * uint32(len(lits))
	pm.litBase = int32(log2Fix(pm.litSum))
}

func (pm *priceModel) addSeq(lits []byte, s seq) {
	pm.addLits(lits)
	c := llCode(s.litLen)
	pm.llFreq[c]++
	pm.llW[c] = int32(log2Fix(pm.llFreq[c])) - int32(llBits[c])<<8
	pm.llSum++
	c = mlCode(s.matchLen)
	pm.mlFreq[c]++
	pm.mlW[c] = int32(log2Fix(pm.mlFreq[c])) - int32(mlBits[c])<<8
	pm.mlSum++
	c = ofCode(s.offVal)
	pm.ofFreq[c]++
	pm.ofW[c] = int32(log2Fix(pm.ofFreq[c]))
	pm.ofSum++
	pm.bases()
}

func (pm *priceModel) litPrice(b byte) int32 { return pm.litBase - pm.litW[b] }

// llTotal is the price of a literal-length code including its extra bits.
func (pm *priceModel) llTotal(ll uint32) int32 { return pm.llBase - pm.llW[llCode(ll)] }

// mlTotal is the price of a match-length code including its extra bits.
func (pm *priceModel) mlTotal(ml uint32) int32 { return pm.mlBase - pm.mlW[mlCode(ml)] }

// ofPrice excludes the offset's extra bits.
func (pm *priceModel) ofPrice(code uint8) int32 { return pm.ofBase - pm.ofW[code] }

// llInc is the extra literal-length cost of one more literal in a run.
func (pm *priceModel) llInc(ll uint32) int32 {
	return pm.llW[llCode(ll-1)] - pm.llW[llCode(ll)]
}
