# pragma version ~=0.4.3
"""
@title Uniswap-V2-style factory
@notice Creates one Pair per token pair from a Pair blueprint (ERC-5202), with CREATE2 salted by the sorted
        token addresses, and emits Uniswap V2's exact PairCreated event.
"""

event PairCreated:
    token0: indexed(address)
    token1: indexed(address)
    pair: address
    allPairsLength: uint256

MAX_PAIRS: constant(uint256) = 1024

pair_blueprint: public(address)
feeTo: public(address)
feeToSetter: public(address)
getPair: public(HashMap[address, HashMap[address, address]])
allPairs: public(DynArray[address, MAX_PAIRS])


@deploy
def __init__(_pair_blueprint: address, _fee_to_setter: address):
    self.pair_blueprint = _pair_blueprint
    self.feeToSetter = _fee_to_setter


@view
@external
def allPairsLength() -> uint256:
    return len(self.allPairs)


@external
def createPair(tokenA: address, tokenB: address) -> address:
    assert tokenA != tokenB, "UniswapV2: IDENTICAL_ADDRESSES"
    token0: address = tokenA
    token1: address = tokenB
    if convert(tokenB, uint256) < convert(tokenA, uint256):
        token0 = tokenB
        token1 = tokenA
    assert token0 != empty(address), "UniswapV2: ZERO_ADDRESS"
    assert self.getPair[token0][token1] == empty(address), "UniswapV2: PAIR_EXISTS"
    salt: bytes32 = keccak256(concat(convert(token0, bytes20), convert(token1, bytes20)))
    pair: address = create_from_blueprint(self.pair_blueprint, token0, token1, salt=salt)
    self.getPair[token0][token1] = pair
    self.getPair[token1][token0] = pair
    self.allPairs.append(pair)
    log PairCreated(token0=token0, token1=token1, pair=pair, allPairsLength=len(self.allPairs))
    return pair


@external
def setFeeTo(_fee_to: address):
    assert msg.sender == self.feeToSetter, "UniswapV2: FORBIDDEN"
    self.feeTo = _fee_to


@external
def setFeeToSetter(_fee_to_setter: address):
    assert msg.sender == self.feeToSetter, "UniswapV2: FORBIDDEN"
    self.feeToSetter = _fee_to_setter
