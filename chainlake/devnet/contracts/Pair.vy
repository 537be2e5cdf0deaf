# pragma version ~=0.4.3
"""
@title Uniswap-V2-style pair
@notice Constant-product AMM with a 0.3% fee, MINIMUM_LIQUIDITY locked at address(0), TWAP accumulators
        and the optional protocol fee, ported from UniswapV2Pair.sol. The LP share is itself an ERC-20.
        Every event has the exact Uniswap V2 / ERC-20 signature, so mainnet decoders read the logs as is.
        Deployed by the Factory from a blueprint; the factory is msg.sender of the constructor.
"""

from ethereum.ercs import IERC20

interface IFactory:
    def feeTo() -> address: view

interface IUniswapV2Callee:
    def uniswapV2Call(sender: address, amount0: uint256, amount1: uint256, data: Bytes[1024]): nonpayable

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

event Mint:
    sender: indexed(address)
    amount0: uint256
    amount1: uint256

event Burn:
    sender: indexed(address)
    amount0: uint256
    amount1: uint256
    to: indexed(address)

event Swap:
    sender: indexed(address)
    amount0In: uint256
    amount1In: uint256
    amount0Out: uint256
    amount1Out: uint256
    to: indexed(address)

event Sync:
    reserve0: uint112
    reserve1: uint112

MINIMUM_LIQUIDITY: public(constant(uint256)) = 10**3

name: public(constant(String[32])) = "Uniswap V2"
symbol: public(constant(String[8])) = "UNI-V2"
decimals: public(constant(uint8)) = 18
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])

factory: public(address)
token0: public(address)
token1: public(address)

reserve0: uint112
reserve1: uint112
blockTimestampLast: uint32

price0CumulativeLast: public(uint256)
price1CumulativeLast: public(uint256)
kLast: public(uint256)


@deploy
def __init__(_token0: address, _token1: address):
    self.factory = msg.sender
    self.token0 = _token0
    self.token1 = _token1


# ---------------------------------------------------------------- LP token (ERC-20)

@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def transfer(to: address, amount: uint256) -> bool:
    self._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(_from: address, to: address, amount: uint256) -> bool:
    allowed: uint256 = self.allowance[_from][msg.sender]
    if allowed != max_value(uint256):
        assert allowed >= amount, "UniswapV2: INSUFFICIENT_ALLOWANCE"
        self.allowance[_from][msg.sender] = allowed - amount
    self._transfer(_from, to, amount)
    return True


@internal
def _transfer(_from: address, to: address, amount: uint256):
    assert self.balanceOf[_from] >= amount, "UniswapV2: INSUFFICIENT_BALANCE"
    self.balanceOf[_from] -= amount
    self.balanceOf[to] += amount
    log Transfer(sender=_from, receiver=to, value=amount)


@internal
def _mint(to: address, amount: uint256):
    self.totalSupply += amount
    self.balanceOf[to] += amount
    log Transfer(sender=empty(address), receiver=to, value=amount)


@internal
def _burn(_from: address, amount: uint256):
    self.balanceOf[_from] -= amount
    self.totalSupply -= amount
    log Transfer(sender=_from, receiver=empty(address), value=amount)


# ---------------------------------------------------------------- AMM

@view
@external
def getReserves() -> (uint112, uint112, uint32):
    return self.reserve0, self.reserve1, self.blockTimestampLast


@internal
def _safe_transfer(token: address, to: address, amount: uint256):
    assert extcall IERC20(token).transfer(to, amount), "UniswapV2: TRANSFER_FAILED"


@internal
def _update(balance0: uint256, balance1: uint256, r0: uint112, r1: uint112):
    """Store new reserves; accumulate TWAP prices (UQ112x112, overflow intended as in Solidity)."""
    assert balance0 <= convert(max_value(uint112), uint256) and balance1 <= convert(max_value(uint112), uint256), "UniswapV2: OVERFLOW"
    ts: uint32 = convert(block.timestamp % 2**32, uint32)
    elapsed: uint32 = unsafe_sub(ts, self.blockTimestampLast)
    if elapsed > 0 and r0 != 0 and r1 != 0:
        q0: uint256 = (convert(r1, uint256) << 112) // convert(r0, uint256)
        q1: uint256 = (convert(r0, uint256) << 112) // convert(r1, uint256)
        self.price0CumulativeLast = unsafe_add(self.price0CumulativeLast, unsafe_mul(q0, convert(elapsed, uint256)))
        self.price1CumulativeLast = unsafe_add(self.price1CumulativeLast, unsafe_mul(q1, convert(elapsed, uint256)))
    self.reserve0 = convert(balance0, uint112)
    self.reserve1 = convert(balance1, uint112)
    self.blockTimestampLast = ts
    log Sync(reserve0=self.reserve0, reserve1=self.reserve1)


@internal
def _mint_fee(r0: uint112, r1: uint112) -> bool:
    """Protocol fee: 1/6 of the growth in sqrt(k) goes to feeTo when it is set (off by default)."""
    fee_to: address = staticcall IFactory(self.factory).feeTo()
    fee_on: bool = fee_to != empty(address)
    k_last: uint256 = self.kLast
    if fee_on:
        if k_last != 0:
            root_k: uint256 = isqrt(convert(r0, uint256) * convert(r1, uint256))
            root_k_last: uint256 = isqrt(k_last)
            if root_k > root_k_last:
                numerator: uint256 = self.totalSupply * (root_k - root_k_last)
                denominator: uint256 = root_k * 5 + root_k_last
                liquidity: uint256 = numerator // denominator
                if liquidity > 0:
                    self._mint(fee_to, liquidity)
    elif k_last != 0:
        self.kLast = 0
    return fee_on


@external
@nonreentrant
def mint(to: address) -> uint256:
    r0: uint112 = self.reserve0
    r1: uint112 = self.reserve1
    balance0: uint256 = staticcall IERC20(self.token0).balanceOf(self)
    balance1: uint256 = staticcall IERC20(self.token1).balanceOf(self)
    amount0: uint256 = balance0 - convert(r0, uint256)
    amount1: uint256 = balance1 - convert(r1, uint256)
    fee_on: bool = self._mint_fee(r0, r1)
    supply: uint256 = self.totalSupply
    liquidity: uint256 = 0
    if supply == 0:
        liquidity = isqrt(amount0 * amount1) - MINIMUM_LIQUIDITY
        self._mint(empty(address), MINIMUM_LIQUIDITY)
    else:
        liquidity = min(amount0 * supply // convert(r0, uint256), amount1 * supply // convert(r1, uint256))
    assert liquidity > 0, "UniswapV2: INSUFFICIENT_LIQUIDITY_MINTED"
    self._mint(to, liquidity)
    self._update(balance0, balance1, r0, r1)
    if fee_on:
        self.kLast = convert(self.reserve0, uint256) * convert(self.reserve1, uint256)
    log Mint(sender=msg.sender, amount0=amount0, amount1=amount1)
    return liquidity


@external
@nonreentrant
def burn(to: address) -> (uint256, uint256):
    r0: uint112 = self.reserve0
    r1: uint112 = self.reserve1
    token0: address = self.token0
    token1: address = self.token1
    balance0: uint256 = staticcall IERC20(token0).balanceOf(self)
    balance1: uint256 = staticcall IERC20(token1).balanceOf(self)
    liquidity: uint256 = self.balanceOf[self]
    fee_on: bool = self._mint_fee(r0, r1)
    supply: uint256 = self.totalSupply
    amount0: uint256 = liquidity * balance0 // supply
    amount1: uint256 = liquidity * balance1 // supply
    assert amount0 > 0 and amount1 > 0, "UniswapV2: INSUFFICIENT_LIQUIDITY_BURNED"
    self._burn(self, liquidity)
    self._safe_transfer(token0, to, amount0)
    self._safe_transfer(token1, to, amount1)
    balance0 = staticcall IERC20(token0).balanceOf(self)
    balance1 = staticcall IERC20(token1).balanceOf(self)
    self._update(balance0, balance1, r0, r1)
    if fee_on:
        self.kLast = convert(self.reserve0, uint256) * convert(self.reserve1, uint256)
    log Burn(sender=msg.sender, amount0=amount0, amount1=amount1, to=to)
    return amount0, amount1


@external
@nonreentrant
def swap(amount0Out: uint256, amount1Out: uint256, to: address, data: Bytes[1024]):
    assert amount0Out > 0 or amount1Out > 0, "UniswapV2: INSUFFICIENT_OUTPUT_AMOUNT"
    r0: uint256 = convert(self.reserve0, uint256)
    r1: uint256 = convert(self.reserve1, uint256)
    assert amount0Out < r0 and amount1Out < r1, "UniswapV2: INSUFFICIENT_LIQUIDITY"
    token0: address = self.token0
    token1: address = self.token1
    assert to != token0 and to != token1, "UniswapV2: INVALID_TO"
    if amount0Out > 0:
        self._safe_transfer(token0, to, amount0Out)
    if amount1Out > 0:
        self._safe_transfer(token1, to, amount1Out)
    if len(data) > 0:
        extcall IUniswapV2Callee(to).uniswapV2Call(msg.sender, amount0Out, amount1Out, data)
    balance0: uint256 = staticcall IERC20(token0).balanceOf(self)
    balance1: uint256 = staticcall IERC20(token1).balanceOf(self)
    amount0In: uint256 = 0
    amount1In: uint256 = 0
    if balance0 > r0 - amount0Out:
        amount0In = balance0 - (r0 - amount0Out)
    if balance1 > r1 - amount1Out:
        amount1In = balance1 - (r1 - amount1Out)
    assert amount0In > 0 or amount1In > 0, "UniswapV2: INSUFFICIENT_INPUT_AMOUNT"
    adjusted0: uint256 = balance0 * 1000 - amount0In * 3
    adjusted1: uint256 = balance1 * 1000 - amount1In * 3
    assert adjusted0 * adjusted1 >= r0 * r1 * 1000**2, "UniswapV2: K"
    self._update(balance0, balance1, self.reserve0, self.reserve1)
    log Swap(sender=msg.sender, amount0In=amount0In, amount1In=amount1In, amount0Out=amount0Out, amount1Out=amount1Out, to=to)


@external
@nonreentrant
def skim(to: address):
    token0: address = self.token0
    token1: address = self.token1
    self._safe_transfer(token0, to, staticcall IERC20(token0).balanceOf(self) - convert(self.reserve0, uint256))
    self._safe_transfer(token1, to, staticcall IERC20(token1).balanceOf(self) - convert(self.reserve1, uint256))


@external
@nonreentrant
def sync():
    self._update(staticcall IERC20(self.token0).balanceOf(self), staticcall IERC20(self.token1).balanceOf(self), self.reserve0, self.reserve1)
