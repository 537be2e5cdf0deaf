# pragma version ~=0.4.3
"""
@title Devnet ERC-20 token
@notice Standard ERC-20 with a minting owner: the devnet faucet mints balances for simulated agents.
        Events are byte-identical in ABI to the ERC-20 standard, so mainnet decoders read them as is.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

name: public(String[64])
symbol: public(String[32])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
owner: public(address)


@deploy
def __init__(_name: String[64], _symbol: String[32], _decimals: uint8):
    self.name = _name
    self.symbol = _symbol
    self.decimals = _decimals
    self.owner = msg.sender


@external
def transfer(_to: address, _value: uint256) -> bool:
    self._transfer(msg.sender, _to, _value)
    return True


@external
def transferFrom(_from: address, _to: address, _value: uint256) -> bool:
    allowed: uint256 = self.allowance[_from][msg.sender]
    if allowed != max_value(uint256):
        assert allowed >= _value, "ERC20: insufficient allowance"
        self.allowance[_from][msg.sender] = allowed - _value
    self._transfer(_from, _to, _value)
    return True


@external
def approve(_spender: address, _value: uint256) -> bool:
    self.allowance[msg.sender][_spender] = _value
    log Approval(owner=msg.sender, spender=_spender, value=_value)
    return True


@external
def mint(_to: address, _value: uint256) -> bool:
    assert msg.sender == self.owner, "ERC20: only owner mints"
    self.totalSupply += _value
    self.balanceOf[_to] += _value
    log Transfer(sender=empty(address), receiver=_to, value=_value)
    return True


@external
def burn(_value: uint256) -> bool:
    assert self.balanceOf[msg.sender] >= _value, "ERC20: burn exceeds balance"
    self.balanceOf[msg.sender] -= _value
    self.totalSupply -= _value
    log Transfer(sender=msg.sender, receiver=empty(address), value=_value)
    return True


@external
def transferOwnership(_owner: address):
    assert msg.sender == self.owner, "ERC20: only owner"
    self.owner = _owner


@internal
def _transfer(_from: address, _to: address, _value: uint256):
    assert self.balanceOf[_from] >= _value, "ERC20: transfer exceeds balance"
    self.balanceOf[_from] -= _value
    self.balanceOf[_to] += _value
    log Transfer(sender=_from, receiver=_to, value=_value)
