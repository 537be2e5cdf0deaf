# pragma version ~=0.4.3
"""
@title Devnet WETH
@notice WETH9 look-alike: deposit ETH to mint, withdraw to burn, with WETH9's Deposit/Withdrawal events
        (same signatures as mainnet WETH9) plus standard ERC-20 Transfer/Approval.
"""

from ethereum.ercs import IERC20

implements: IERC20

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

event Deposit:
    dst: indexed(address)
    wad: uint256

event Withdrawal:
    src: indexed(address)
    wad: uint256

name: public(String[64])
symbol: public(String[32])
decimals: public(uint8)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])


@deploy
def __init__():
    self.name = "Wrapped Ether"
    self.symbol = "WETH"
    self.decimals = 18


@external
@payable
def __default__():
    self._deposit()


@external
@payable
def deposit():
    self._deposit()


@external
def withdraw(wad: uint256):
    assert self.balanceOf[msg.sender] >= wad, "WETH: insufficient balance"
    self.balanceOf[msg.sender] -= wad
    send(msg.sender, wad)
    log Withdrawal(src=msg.sender, wad=wad)


@view
@external
def totalSupply() -> uint256:
    return self.balance


@external
def approve(guy: address, wad: uint256) -> bool:
    self.allowance[msg.sender][guy] = wad
    log Approval(owner=msg.sender, spender=guy, value=wad)
    return True


@external
def transfer(dst: address, wad: uint256) -> bool:
    self._transfer(msg.sender, dst, wad)
    return True


@external
def transferFrom(src: address, dst: address, wad: uint256) -> bool:
    if src != msg.sender:
        allowed: uint256 = self.allowance[src][msg.sender]
        if allowed != max_value(uint256):
            assert allowed >= wad, "WETH: insufficient allowance"
            self.allowance[src][msg.sender] = allowed - wad
    self._transfer(src, dst, wad)
    return True


@internal
@payable
def _deposit():
    self.balanceOf[msg.sender] += msg.value
    log Deposit(dst=msg.sender, wad=msg.value)


@internal
def _transfer(src: address, dst: address, wad: uint256):
    assert self.balanceOf[src] >= wad, "WETH: insufficient balance"
    self.balanceOf[src] -= wad
    self.balanceOf[dst] += wad
    log Transfer(sender=src, receiver=dst, value=wad)
