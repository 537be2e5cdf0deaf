# pragma version ~=0.4.3
"""
@title Uniswap-V2-style router
@notice Same function signatures (selectors) as UniswapV2Router02 for everything implemented here, so pending
        swaps in the mempool decode with the real Uniswap ABI. Fee-on-transfer variants and permit are left out.
        Pairs are looked up with factory.getPair instead of the CREATE2 init-code hash (blueprint init code
        embeds constructor args, so there is no single hash).
"""

from ethereum.ercs import IERC20

interface IFactory:
    def getPair(tokenA: address, tokenB: address) -> address: view
    def createPair(tokenA: address, tokenB: address) -> address: nonpayable

interface IPair:
    def getReserves() -> (uint112, uint112, uint32): view
    def mint(to: address) -> uint256: nonpayable
    def burn(to: address) -> (uint256, uint256): nonpayable
    def swap(amount0Out: uint256, amount1Out: uint256, to: address, data: Bytes[1024]): nonpayable
    def transferFrom(_from: address, to: address, amount: uint256) -> bool: nonpayable

interface IWETH:
    def deposit(): payable
    def withdraw(wad: uint256): nonpayable
    def transfer(dst: address, wad: uint256) -> bool: nonpayable

MAX_PATH: constant(uint256) = 4

factory: public(immutable(address))
WETH: public(immutable(address))


@deploy
def __init__(_factory: address, _weth: address):
    factory = _factory
    WETH = _weth


@external
@payable
def __default__():
    """Only WETH sends ETH here (on withdraw); cheap enough for WETH's 2300-gas send."""
    assert msg.sender == WETH, "UniswapV2Router: NOT_WETH"


# ---------------------------------------------------------------- library (UniswapV2Library)

@internal
@pure
def _sort(tokenA: address, tokenB: address) -> (address, address):
    assert tokenA != tokenB, "UniswapV2Library: IDENTICAL_ADDRESSES"
    if convert(tokenA, uint256) < convert(tokenB, uint256):
        return tokenA, tokenB
    return tokenB, tokenA


@internal
@view
def _pair_for(tokenA: address, tokenB: address) -> address:
    pair: address = staticcall IFactory(factory).getPair(tokenA, tokenB)
    assert pair != empty(address), "UniswapV2Library: NO_PAIR"
    return pair


@internal
@view
def _get_reserves(tokenA: address, tokenB: address) -> (uint256, uint256):
    token0: address = empty(address)
    token1: address = empty(address)
    token0, token1 = self._sort(tokenA, tokenB)
    r0: uint112 = 0
    r1: uint112 = 0
    ts: uint32 = 0
    r0, r1, ts = staticcall IPair(self._pair_for(tokenA, tokenB)).getReserves()
    if tokenA == token0:
        return convert(r0, uint256), convert(r1, uint256)
    return convert(r1, uint256), convert(r0, uint256)


@internal
@pure
def _quote(amountA: uint256, reserveA: uint256, reserveB: uint256) -> uint256:
    assert amountA > 0, "UniswapV2Library: INSUFFICIENT_AMOUNT"
    assert reserveA > 0 and reserveB > 0, "UniswapV2Library: INSUFFICIENT_LIQUIDITY"
    return amountA * reserveB // reserveA


@internal
@pure
def _get_amount_out(amountIn: uint256, reserveIn: uint256, reserveOut: uint256) -> uint256:
    assert amountIn > 0, "UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT"
    assert reserveIn > 0 and reserveOut > 0, "UniswapV2Library: INSUFFICIENT_LIQUIDITY"
    amount_in_with_fee: uint256 = amountIn * 997
    return amount_in_with_fee * reserveOut // (reserveIn * 1000 + amount_in_with_fee)


@internal
@pure
def _get_amount_in(amountOut: uint256, reserveIn: uint256, reserveOut: uint256) -> uint256:
    assert amountOut > 0, "UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT"
    assert reserveIn > 0 and reserveOut > amountOut, "UniswapV2Library: INSUFFICIENT_LIQUIDITY"
    return reserveIn * amountOut * 1000 // ((reserveOut - amountOut) * 997) + 1


@internal
@view
def _get_amounts_out(amountIn: uint256, path: DynArray[address, MAX_PATH]) -> DynArray[uint256, MAX_PATH]:
    assert len(path) >= 2, "UniswapV2Library: INVALID_PATH"
    amounts: DynArray[uint256, MAX_PATH] = [amountIn]
    for i: uint256 in range(len(path) - 1, bound=MAX_PATH):
        reserve_in: uint256 = 0
        reserve_out: uint256 = 0
        reserve_in, reserve_out = self._get_reserves(path[i], path[i + 1])
        amounts.append(self._get_amount_out(amounts[i], reserve_in, reserve_out))
    return amounts


@internal
@view
def _get_amounts_in(amountOut: uint256, path: DynArray[address, MAX_PATH]) -> DynArray[uint256, MAX_PATH]:
    assert len(path) >= 2, "UniswapV2Library: INVALID_PATH"
    n: uint256 = len(path)
    amounts: DynArray[uint256, MAX_PATH] = []
    for i: uint256 in range(n, bound=MAX_PATH):
        amounts.append(0)
    amounts[n - 1] = amountOut
    for j: uint256 in range(n - 1, bound=MAX_PATH):
        i: uint256 = n - 1 - j
        reserve_in: uint256 = 0
        reserve_out: uint256 = 0
        reserve_in, reserve_out = self._get_reserves(path[i - 1], path[i])
        amounts[i - 1] = self._get_amount_in(amounts[i], reserve_in, reserve_out)
    return amounts


@external
@pure
def quote(amountA: uint256, reserveA: uint256, reserveB: uint256) -> uint256:
    return self._quote(amountA, reserveA, reserveB)


@external
@pure
def getAmountOut(amountIn: uint256, reserveIn: uint256, reserveOut: uint256) -> uint256:
    return self._get_amount_out(amountIn, reserveIn, reserveOut)


@external
@pure
def getAmountIn(amountOut: uint256, reserveIn: uint256, reserveOut: uint256) -> uint256:
    return self._get_amount_in(amountOut, reserveIn, reserveOut)


@external
@view
def getAmountsOut(amountIn: uint256, path: DynArray[address, MAX_PATH]) -> DynArray[uint256, MAX_PATH]:
    return self._get_amounts_out(amountIn, path)


@external
@view
def getAmountsIn(amountOut: uint256, path: DynArray[address, MAX_PATH]) -> DynArray[uint256, MAX_PATH]:
    return self._get_amounts_in(amountOut, path)


# ---------------------------------------------------------------- liquidity

@internal
def _ensure(deadline: uint256):
    assert deadline >= block.timestamp, "UniswapV2Router: EXPIRED"


@internal
def _add_liquidity(tokenA: address, tokenB: address, amountADesired: uint256, amountBDesired: uint256, amountAMin: uint256, amountBMin: uint256) -> (uint256, uint256):
    if staticcall IFactory(factory).getPair(tokenA, tokenB) == empty(address):
        extcall IFactory(factory).createPair(tokenA, tokenB)
    reserve_a: uint256 = 0
    reserve_b: uint256 = 0
    reserve_a, reserve_b = self._get_reserves(tokenA, tokenB)
    if reserve_a == 0 and reserve_b == 0:
        return amountADesired, amountBDesired
    amount_b_optimal: uint256 = self._quote(amountADesired, reserve_a, reserve_b)
    if amount_b_optimal <= amountBDesired:
        assert amount_b_optimal >= amountBMin, "UniswapV2Router: INSUFFICIENT_B_AMOUNT"
        return amountADesired, amount_b_optimal
    amount_a_optimal: uint256 = self._quote(amountBDesired, reserve_b, reserve_a)
    assert amount_a_optimal <= amountADesired
    assert amount_a_optimal >= amountAMin, "UniswapV2Router: INSUFFICIENT_A_AMOUNT"
    return amount_a_optimal, amountBDesired


@internal
def _pull(token: address, src: address, dst: address, amount: uint256):
    assert extcall IERC20(token).transferFrom(src, dst, amount), "TransferHelper: TRANSFER_FROM_FAILED"


@external
def addLiquidity(tokenA: address, tokenB: address, amountADesired: uint256, amountBDesired: uint256, amountAMin: uint256, amountBMin: uint256, to: address, deadline: uint256) -> (uint256, uint256, uint256):
    self._ensure(deadline)
    amount_a: uint256 = 0
    amount_b: uint256 = 0
    amount_a, amount_b = self._add_liquidity(tokenA, tokenB, amountADesired, amountBDesired, amountAMin, amountBMin)
    pair: address = self._pair_for(tokenA, tokenB)
    self._pull(tokenA, msg.sender, pair, amount_a)
    self._pull(tokenB, msg.sender, pair, amount_b)
    liquidity: uint256 = extcall IPair(pair).mint(to)
    return amount_a, amount_b, liquidity


@external
@payable
def addLiquidityETH(token: address, amountTokenDesired: uint256, amountTokenMin: uint256, amountETHMin: uint256, to: address, deadline: uint256) -> (uint256, uint256, uint256):
    self._ensure(deadline)
    amount_token: uint256 = 0
    amount_eth: uint256 = 0
    amount_token, amount_eth = self._add_liquidity(token, WETH, amountTokenDesired, msg.value, amountTokenMin, amountETHMin)
    pair: address = self._pair_for(token, WETH)
    self._pull(token, msg.sender, pair, amount_token)
    extcall IWETH(WETH).deposit(value=amount_eth)
    assert extcall IWETH(WETH).transfer(pair, amount_eth)
    liquidity: uint256 = extcall IPair(pair).mint(to)
    if msg.value > amount_eth:
        raw_call(msg.sender, b"", value=msg.value - amount_eth)
    return amount_token, amount_eth, liquidity


@internal
def _remove_liquidity(tokenA: address, tokenB: address, liquidity: uint256, amountAMin: uint256, amountBMin: uint256, to: address) -> (uint256, uint256):
    pair: address = self._pair_for(tokenA, tokenB)
    assert extcall IPair(pair).transferFrom(msg.sender, pair, liquidity), "UniswapV2Router: LP_TRANSFER_FAILED"
    amount0: uint256 = 0
    amount1: uint256 = 0
    amount0, amount1 = extcall IPair(pair).burn(to)
    token0: address = empty(address)
    token1: address = empty(address)
    token0, token1 = self._sort(tokenA, tokenB)
    amount_a: uint256 = amount1
    amount_b: uint256 = amount0
    if tokenA == token0:
        amount_a = amount0
        amount_b = amount1
    assert amount_a >= amountAMin, "UniswapV2Router: INSUFFICIENT_A_AMOUNT"
    assert amount_b >= amountBMin, "UniswapV2Router: INSUFFICIENT_B_AMOUNT"
    return amount_a, amount_b


@external
def removeLiquidity(tokenA: address, tokenB: address, liquidity: uint256, amountAMin: uint256, amountBMin: uint256, to: address, deadline: uint256) -> (uint256, uint256):
    self._ensure(deadline)
    return self._remove_liquidity(tokenA, tokenB, liquidity, amountAMin, amountBMin, to)


@external
def removeLiquidityETH(token: address, liquidity: uint256, amountTokenMin: uint256, amountETHMin: uint256, to: address, deadline: uint256) -> (uint256, uint256):
    self._ensure(deadline)
    amount_token: uint256 = 0
    amount_eth: uint256 = 0
    amount_token, amount_eth = self._remove_liquidity(token, WETH, liquidity, amountTokenMin, amountETHMin, self)
    assert extcall IERC20(token).transfer(to, amount_token)
    extcall IWETH(WETH).withdraw(amount_eth)
    raw_call(to, b"", value=amount_eth)
    return amount_token, amount_eth


# ---------------------------------------------------------------- swaps

@internal
def _swap(amounts: DynArray[uint256, MAX_PATH], path: DynArray[address, MAX_PATH], _to: address):
    """Walk the path: each pair pays the next pair directly, the last one pays `_to`."""
    n: uint256 = len(path)
    for i: uint256 in range(n - 1, bound=MAX_PATH):
        token_in: address = path[i]
        token_out: address = path[i + 1]
        token0: address = empty(address)
        token1: address = empty(address)
        token0, token1 = self._sort(token_in, token_out)
        amount_out: uint256 = amounts[i + 1]
        amount0_out: uint256 = 0
        amount1_out: uint256 = amount_out
        if token_in != token0:
            amount0_out = amount_out
            amount1_out = 0
        to: address = _to
        if i < n - 2:
            to = self._pair_for(token_out, path[i + 2])
        extcall IPair(self._pair_for(token_in, token_out)).swap(amount0_out, amount1_out, to, b"")


@external
def swapExactTokensForTokens(amountIn: uint256, amountOutMin: uint256, path: DynArray[address, MAX_PATH], to: address, deadline: uint256) -> DynArray[uint256, MAX_PATH]:
    self._ensure(deadline)
    amounts: DynArray[uint256, MAX_PATH] = self._get_amounts_out(amountIn, path)
    assert amounts[len(amounts) - 1] >= amountOutMin, "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"
    self._pull(path[0], msg.sender, self._pair_for(path[0], path[1]), amounts[0])
    self._swap(amounts, path, to)
    return amounts


@external
def swapTokensForExactTokens(amountOut: uint256, amountInMax: uint256, path: DynArray[address, MAX_PATH], to: address, deadline: uint256) -> DynArray[uint256, MAX_PATH]:
    self._ensure(deadline)
    amounts: DynArray[uint256, MAX_PATH] = self._get_amounts_in(amountOut, path)
    assert amounts[0] <= amountInMax, "UniswapV2Router: EXCESSIVE_INPUT_AMOUNT"
    self._pull(path[0], msg.sender, self._pair_for(path[0], path[1]), amounts[0])
    self._swap(amounts, path, to)
    return amounts


@external
@payable
def swapExactETHForTokens(amountOutMin: uint256, path: DynArray[address, MAX_PATH], to: address, deadline: uint256) -> DynArray[uint256, MAX_PATH]:
    self._ensure(deadline)
    assert path[0] == WETH, "UniswapV2Router: INVALID_PATH"
    amounts: DynArray[uint256, MAX_PATH] = self._get_amounts_out(msg.value, path)
    assert amounts[len(amounts) - 1] >= amountOutMin, "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"
    extcall IWETH(WETH).deposit(value=amounts[0])
    assert extcall IWETH(WETH).transfer(self._pair_for(path[0], path[1]), amounts[0])
    self._swap(amounts, path, to)
    return amounts


@external
def swapExactTokensForETH(amountIn: uint256, amountOutMin: uint256, path: DynArray[address, MAX_PATH], to: address, deadline: uint256) -> DynArray[uint256, MAX_PATH]:
    self._ensure(deadline)
    assert path[len(path) - 1] == WETH, "UniswapV2Router: INVALID_PATH"
    amounts: DynArray[uint256, MAX_PATH] = self._get_amounts_out(amountIn, path)
    out: uint256 = amounts[len(amounts) - 1]
    assert out >= amountOutMin, "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"
    self._pull(path[0], msg.sender, self._pair_for(path[0], path[1]), amounts[0])
    self._swap(amounts, path, self)
    extcall IWETH(WETH).withdraw(out)
    raw_call(to, b"", value=out)
    return amounts


@external
def swapTokensForExactETH(amountOut: uint256, amountInMax: uint256, path: DynArray[address, MAX_PATH], to: address, deadline: uint256) -> DynArray[uint256, MAX_PATH]:
    self._ensure(deadline)
    assert path[len(path) - 1] == WETH, "UniswapV2Router: INVALID_PATH"
    amounts: DynArray[uint256, MAX_PATH] = self._get_amounts_in(amountOut, path)
    assert amounts[0] <= amountInMax, "UniswapV2Router: EXCESSIVE_INPUT_AMOUNT"
    self._pull(path[0], msg.sender, self._pair_for(path[0], path[1]), amounts[0])
    self._swap(amounts, path, self)
    extcall IWETH(WETH).withdraw(amountOut)
    raw_call(to, b"", value=amountOut)
    return amounts


@external
@payable
def swapETHForExactTokens(amountOut: uint256, path: DynArray[address, MAX_PATH], to: address, deadline: uint256) -> DynArray[uint256, MAX_PATH]:
    self._ensure(deadline)
    assert path[0] == WETH, "UniswapV2Router: INVALID_PATH"
    amounts: DynArray[uint256, MAX_PATH] = self._get_amounts_in(amountOut, path)
    assert amounts[0] <= msg.value, "UniswapV2Router: EXCESSIVE_INPUT_AMOUNT"
    extcall IWETH(WETH).deposit(value=amounts[0])
    assert extcall IWETH(WETH).transfer(self._pair_for(path[0], path[1]), amounts[0])
    self._swap(amounts, path, to)
    if msg.value > amounts[0]:
        raw_call(msg.sender, b"", value=msg.value - amounts[0])
    return amounts
