import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Site(_message.Message):
    __slots__ = ("id", "name", "address", "timezone", "municipality_id", "tariff_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    MUNICIPALITY_ID_FIELD_NUMBER: _ClassVar[int]
    TARIFF_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    address: str
    timezone: str
    municipality_id: int
    tariff_id: int
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., address: _Optional[str] = ..., timezone: _Optional[str] = ..., municipality_id: _Optional[int] = ..., tariff_id: _Optional[int] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("id", "site_id", "name", "serial_number", "kind")
    ID_FIELD_NUMBER: _ClassVar[int]
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    id: int
    site_id: int
    name: str
    serial_number: str
    kind: str
    def __init__(self, id: _Optional[int] = ..., site_id: _Optional[int] = ..., name: _Optional[str] = ..., serial_number: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class Municipality(_message.Message):
    __slots__ = ("id", "name", "region")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    region: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., region: _Optional[str] = ...) -> None: ...

class TariffPeriod(_message.Message):
    __slots__ = ("id", "name", "days_of_week", "start_time", "end_time", "rate")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DAYS_OF_WEEK_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    days_of_week: int
    start_time: str
    end_time: str
    rate: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., days_of_week: _Optional[int] = ..., start_time: _Optional[str] = ..., end_time: _Optional[str] = ..., rate: _Optional[str] = ...) -> None: ...

class Tariff(_message.Message):
    __slots__ = ("id", "municipality_id", "name", "is_active", "effective_from", "effective_to", "default_rate", "fixed_charge", "vat_percent", "currency", "periods")
    ID_FIELD_NUMBER: _ClassVar[int]
    MUNICIPALITY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_RATE_FIELD_NUMBER: _ClassVar[int]
    FIXED_CHARGE_FIELD_NUMBER: _ClassVar[int]
    VAT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    id: int
    municipality_id: int
    name: str
    is_active: bool
    effective_from: _timestamp_pb2.Timestamp
    effective_to: _timestamp_pb2.Timestamp
    default_rate: str
    fixed_charge: str
    vat_percent: str
    currency: str
    periods: _containers.RepeatedCompositeFieldContainer[TariffPeriod]
    def __init__(self, id: _Optional[int] = ..., municipality_id: _Optional[int] = ..., name: _Optional[str] = ..., is_active: _Optional[bool] = ..., effective_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., effective_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., default_rate: _Optional[str] = ..., fixed_charge: _Optional[str] = ..., vat_percent: _Optional[str] = ..., currency: _Optional[str] = ..., periods: _Optional[_Iterable[_Union[TariffPeriod, _Mapping]]] = ...) -> None: ...

class Measurement(_message.Message):
    __slots__ = ("device_id", "metric", "time", "value", "received_at")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    metric: str
    time: _timestamp_pb2.Timestamp
    value: float
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, device_id: _Optional[int] = ..., metric: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SyncSummary(_message.Message):
    __slots__ = ("received", "inserted", "updated", "deleted", "unchanged")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    received: int
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    def __init__(self, received: _Optional[int] = ..., inserted: _Optional[int] = ..., updated: _Optional[int] = ..., deleted: _Optional[int] = ..., unchanged: _Optional[int] = ...) -> None: ...

class Customer(_message.Message):
    __slots__ = ("id", "code", "name", "is_active", "created_at", "token_issued_at", "previous_token_expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_TOKEN_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    code: str
    name: str
    is_active: bool
    created_at: _timestamp_pb2.Timestamp
    token_issued_at: _timestamp_pb2.Timestamp
    previous_token_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., code: _Optional[str] = ..., name: _Optional[str] = ..., is_active: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., token_issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_token_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
