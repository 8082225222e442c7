import datetime

from fleet.v1 import resources_pb2 as _resources_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Bucket(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUCKET_UNSPECIFIED: _ClassVar[Bucket]
    BUCKET_RAW: _ClassVar[Bucket]
    BUCKET_HOUR: _ClassVar[Bucket]
    BUCKET_DAY: _ClassVar[Bucket]

class HealthProblem(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_PROBLEM_UNSPECIFIED: _ClassVar[HealthProblem]
    HEALTH_PROBLEM_STALE: _ClassVar[HealthProblem]
    HEALTH_PROBLEM_SILENT_DEVICES: _ClassVar[HealthProblem]
    HEALTH_PROBLEM_TOKEN_EXPIRING: _ClassVar[HealthProblem]
BUCKET_UNSPECIFIED: Bucket
BUCKET_RAW: Bucket
BUCKET_HOUR: Bucket
BUCKET_DAY: Bucket
HEALTH_PROBLEM_UNSPECIFIED: HealthProblem
HEALTH_PROBLEM_STALE: HealthProblem
HEALTH_PROBLEM_SILENT_DEVICES: HealthProblem
HEALTH_PROBLEM_TOKEN_EXPIRING: HealthProblem

class GetCustomerDetailRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class TariffView(_message.Message):
    __slots__ = ("tariff", "municipality_name")
    TARIFF_FIELD_NUMBER: _ClassVar[int]
    MUNICIPALITY_NAME_FIELD_NUMBER: _ClassVar[int]
    tariff: _resources_pb2.Tariff
    municipality_name: str
    def __init__(self, tariff: _Optional[_Union[_resources_pb2.Tariff, _Mapping]] = ..., municipality_name: _Optional[str] = ...) -> None: ...

class SyncStatus(_message.Message):
    __slots__ = ("resource", "last_push_at", "last_received", "high_water_received_at")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    LAST_PUSH_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    HIGH_WATER_RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    resource: str
    last_push_at: _timestamp_pb2.Timestamp
    last_received: int
    high_water_received_at: _timestamp_pb2.Timestamp
    def __init__(self, resource: _Optional[str] = ..., last_push_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_received: _Optional[int] = ..., high_water_received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetCustomerDetailResponse(_message.Message):
    __slots__ = ("customer", "sites", "devices", "municipalities", "tariffs", "sync", "site_count", "device_count", "municipality_count", "tariff_count", "next_sites_page_token", "next_devices_page_token", "next_municipalities_page_token", "next_tariffs_page_token")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    MUNICIPALITIES_FIELD_NUMBER: _ClassVar[int]
    TARIFFS_FIELD_NUMBER: _ClassVar[int]
    SYNC_FIELD_NUMBER: _ClassVar[int]
    SITE_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MUNICIPALITY_COUNT_FIELD_NUMBER: _ClassVar[int]
    TARIFF_COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXT_SITES_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NEXT_DEVICES_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NEXT_MUNICIPALITIES_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NEXT_TARIFFS_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    customer: _resources_pb2.Customer
    sites: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Site]
    devices: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Device]
    municipalities: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Municipality]
    tariffs: _containers.RepeatedCompositeFieldContainer[TariffView]
    sync: _containers.RepeatedCompositeFieldContainer[SyncStatus]
    site_count: int
    device_count: int
    municipality_count: int
    tariff_count: int
    next_sites_page_token: str
    next_devices_page_token: str
    next_municipalities_page_token: str
    next_tariffs_page_token: str
    def __init__(self, customer: _Optional[_Union[_resources_pb2.Customer, _Mapping]] = ..., sites: _Optional[_Iterable[_Union[_resources_pb2.Site, _Mapping]]] = ..., devices: _Optional[_Iterable[_Union[_resources_pb2.Device, _Mapping]]] = ..., municipalities: _Optional[_Iterable[_Union[_resources_pb2.Municipality, _Mapping]]] = ..., tariffs: _Optional[_Iterable[_Union[TariffView, _Mapping]]] = ..., sync: _Optional[_Iterable[_Union[SyncStatus, _Mapping]]] = ..., site_count: _Optional[int] = ..., device_count: _Optional[int] = ..., municipality_count: _Optional[int] = ..., tariff_count: _Optional[int] = ..., next_sites_page_token: _Optional[str] = ..., next_devices_page_token: _Optional[str] = ..., next_municipalities_page_token: _Optional[str] = ..., next_tariffs_page_token: _Optional[str] = ...) -> None: ...

class ListSitesRequest(_message.Message):
    __slots__ = ("code", "page_size", "page_token")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    code: str
    page_size: int
    page_token: str
    def __init__(self, code: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSitesResponse(_message.Message):
    __slots__ = ("sites", "next_page_token", "total_size")
    SITES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Site]
    next_page_token: str
    total_size: int
    def __init__(self, sites: _Optional[_Iterable[_Union[_resources_pb2.Site, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ("code", "page_size", "page_token")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    code: str
    page_size: int
    page_token: str
    def __init__(self, code: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices", "next_page_token", "total_size")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Device]
    next_page_token: str
    total_size: int
    def __init__(self, devices: _Optional[_Iterable[_Union[_resources_pb2.Device, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class ListMunicipalitiesRequest(_message.Message):
    __slots__ = ("code", "page_size", "page_token")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    code: str
    page_size: int
    page_token: str
    def __init__(self, code: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMunicipalitiesResponse(_message.Message):
    __slots__ = ("municipalities", "next_page_token", "total_size")
    MUNICIPALITIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    municipalities: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Municipality]
    next_page_token: str
    total_size: int
    def __init__(self, municipalities: _Optional[_Iterable[_Union[_resources_pb2.Municipality, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class ListTariffsRequest(_message.Message):
    __slots__ = ("code", "page_size", "page_token")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    code: str
    page_size: int
    page_token: str
    def __init__(self, code: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTariffsResponse(_message.Message):
    __slots__ = ("tariffs", "next_page_token", "total_size")
    TARIFFS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    tariffs: _containers.RepeatedCompositeFieldContainer[TariffView]
    next_page_token: str
    total_size: int
    def __init__(self, tariffs: _Optional[_Iterable[_Union[TariffView, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class QueryMeasurementsRequest(_message.Message):
    __slots__ = ("code", "device_ids", "metric", "start", "end", "bucket")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    code: str
    device_ids: _containers.RepeatedScalarFieldContainer[int]
    metric: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    bucket: Bucket
    def __init__(self, code: _Optional[str] = ..., device_ids: _Optional[_Iterable[int]] = ..., metric: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bucket: _Optional[_Union[Bucket, str]] = ...) -> None: ...

class MeasurementPoint(_message.Message):
    __slots__ = ("device_id", "bucket_start", "count", "sum", "min", "max")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKET_START_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    bucket_start: _timestamp_pb2.Timestamp
    count: int
    sum: float
    min: float
    max: float
    def __init__(self, device_id: _Optional[int] = ..., bucket_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., count: _Optional[int] = ..., sum: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class QueryMeasurementsResponse(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[MeasurementPoint]
    def __init__(self, points: _Optional[_Iterable[_Union[MeasurementPoint, _Mapping]]] = ...) -> None: ...

class SummarizeFleetRequest(_message.Message):
    __slots__ = ("metric", "start", "end")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    metric: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    def __init__(self, metric: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CustomerSummary(_message.Message):
    __slots__ = ("code", "devices", "devices_seen", "rows", "sum")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    DEVICES_SEEN_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    code: str
    devices: int
    devices_seen: int
    rows: int
    sum: float
    def __init__(self, code: _Optional[str] = ..., devices: _Optional[int] = ..., devices_seen: _Optional[int] = ..., rows: _Optional[int] = ..., sum: _Optional[float] = ...) -> None: ...

class SummarizeFleetResponse(_message.Message):
    __slots__ = ("customers",)
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    customers: _containers.RepeatedCompositeFieldContainer[CustomerSummary]
    def __init__(self, customers: _Optional[_Iterable[_Union[CustomerSummary, _Mapping]]] = ...) -> None: ...

class ComputeCostsRequest(_message.Message):
    __slots__ = ("codes", "start", "end")
    CODES_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedScalarFieldContainer[str]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    def __init__(self, codes: _Optional[_Iterable[str]] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PeriodCost(_message.Message):
    __slots__ = ("period_id", "period_name", "kwh", "rate", "cost")
    PERIOD_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_NAME_FIELD_NUMBER: _ClassVar[int]
    KWH_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    period_id: int
    period_name: str
    kwh: str
    rate: str
    cost: str
    def __init__(self, period_id: _Optional[int] = ..., period_name: _Optional[str] = ..., kwh: _Optional[str] = ..., rate: _Optional[str] = ..., cost: _Optional[str] = ...) -> None: ...

class SiteCost(_message.Message):
    __slots__ = ("site_id", "site_name", "tariff_id", "currency", "periods", "energy_kwh", "energy_cost", "fixed_charge", "vat", "total", "unpriced_kwh", "tariff_name")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_NAME_FIELD_NUMBER: _ClassVar[int]
    TARIFF_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_KWH_FIELD_NUMBER: _ClassVar[int]
    ENERGY_COST_FIELD_NUMBER: _ClassVar[int]
    FIXED_CHARGE_FIELD_NUMBER: _ClassVar[int]
    VAT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_KWH_FIELD_NUMBER: _ClassVar[int]
    TARIFF_NAME_FIELD_NUMBER: _ClassVar[int]
    site_id: int
    site_name: str
    tariff_id: int
    currency: str
    periods: _containers.RepeatedCompositeFieldContainer[PeriodCost]
    energy_kwh: str
    energy_cost: str
    fixed_charge: str
    vat: str
    total: str
    unpriced_kwh: str
    tariff_name: str
    def __init__(self, site_id: _Optional[int] = ..., site_name: _Optional[str] = ..., tariff_id: _Optional[int] = ..., currency: _Optional[str] = ..., periods: _Optional[_Iterable[_Union[PeriodCost, _Mapping]]] = ..., energy_kwh: _Optional[str] = ..., energy_cost: _Optional[str] = ..., fixed_charge: _Optional[str] = ..., vat: _Optional[str] = ..., total: _Optional[str] = ..., unpriced_kwh: _Optional[str] = ..., tariff_name: _Optional[str] = ...) -> None: ...

class CurrencyTotal(_message.Message):
    __slots__ = ("currency", "total")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    currency: str
    total: str
    def __init__(self, currency: _Optional[str] = ..., total: _Optional[str] = ...) -> None: ...

class CustomerCost(_message.Message):
    __slots__ = ("code", "sites", "totals")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    code: str
    sites: _containers.RepeatedCompositeFieldContainer[SiteCost]
    totals: _containers.RepeatedCompositeFieldContainer[CurrencyTotal]
    def __init__(self, code: _Optional[str] = ..., sites: _Optional[_Iterable[_Union[SiteCost, _Mapping]]] = ..., totals: _Optional[_Iterable[_Union[CurrencyTotal, _Mapping]]] = ...) -> None: ...

class ComputeCostsResponse(_message.Message):
    __slots__ = ("customers",)
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    customers: _containers.RepeatedCompositeFieldContainer[CustomerCost]
    def __init__(self, customers: _Optional[_Iterable[_Union[CustomerCost, _Mapping]]] = ...) -> None: ...

class GetFleetHealthRequest(_message.Message):
    __slots__ = ("code", "silent_after", "stale_after", "page_size", "page_token")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SILENT_AFTER_FIELD_NUMBER: _ClassVar[int]
    STALE_AFTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    code: str
    silent_after: _duration_pb2.Duration
    stale_after: _duration_pb2.Duration
    page_size: int
    page_token: str
    def __init__(self, code: _Optional[str] = ..., silent_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., stale_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TokenHealth(_message.Message):
    __slots__ = ("issued_at", "previous_expires_at", "previous_last_used_at", "previous_used_recently")
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_USED_RECENTLY_FIELD_NUMBER: _ClassVar[int]
    issued_at: _timestamp_pb2.Timestamp
    previous_expires_at: _timestamp_pb2.Timestamp
    previous_last_used_at: _timestamp_pb2.Timestamp
    previous_used_recently: bool
    def __init__(self, issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_last_used_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_used_recently: _Optional[bool] = ...) -> None: ...

class SilentDevice(_message.Message):
    __slots__ = ("device_id", "name", "site_id", "last_reading_at")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_READING_AT_FIELD_NUMBER: _ClassVar[int]
    device_id: int
    name: str
    site_id: int
    last_reading_at: _timestamp_pb2.Timestamp
    def __init__(self, device_id: _Optional[int] = ..., name: _Optional[str] = ..., site_id: _Optional[int] = ..., last_reading_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CustomerHealth(_message.Message):
    __slots__ = ("code", "name", "is_active", "token", "sync", "last_push_at", "newest_reading_at", "reading_lag", "device_count", "silent_device_count", "silent_devices", "next_silent_devices_page_token", "problems")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SYNC_FIELD_NUMBER: _ClassVar[int]
    LAST_PUSH_AT_FIELD_NUMBER: _ClassVar[int]
    NEWEST_READING_AT_FIELD_NUMBER: _ClassVar[int]
    READING_LAG_FIELD_NUMBER: _ClassVar[int]
    DEVICE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SILENT_DEVICE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SILENT_DEVICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_SILENT_DEVICES_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    is_active: bool
    token: TokenHealth
    sync: _containers.RepeatedCompositeFieldContainer[SyncStatus]
    last_push_at: _timestamp_pb2.Timestamp
    newest_reading_at: _timestamp_pb2.Timestamp
    reading_lag: _duration_pb2.Duration
    device_count: int
    silent_device_count: int
    silent_devices: _containers.RepeatedCompositeFieldContainer[SilentDevice]
    next_silent_devices_page_token: str
    problems: _containers.RepeatedScalarFieldContainer[HealthProblem]
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., is_active: _Optional[bool] = ..., token: _Optional[_Union[TokenHealth, _Mapping]] = ..., sync: _Optional[_Iterable[_Union[SyncStatus, _Mapping]]] = ..., last_push_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., newest_reading_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reading_lag: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., device_count: _Optional[int] = ..., silent_device_count: _Optional[int] = ..., silent_devices: _Optional[_Iterable[_Union[SilentDevice, _Mapping]]] = ..., next_silent_devices_page_token: _Optional[str] = ..., problems: _Optional[_Iterable[_Union[HealthProblem, str]]] = ...) -> None: ...

class GetFleetHealthResponse(_message.Message):
    __slots__ = ("customers", "next_page_token", "checked_at", "silent_after", "stale_after")
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    SILENT_AFTER_FIELD_NUMBER: _ClassVar[int]
    STALE_AFTER_FIELD_NUMBER: _ClassVar[int]
    customers: _containers.RepeatedCompositeFieldContainer[CustomerHealth]
    next_page_token: str
    checked_at: _timestamp_pb2.Timestamp
    silent_after: _duration_pb2.Duration
    stale_after: _duration_pb2.Duration
    def __init__(self, customers: _Optional[_Iterable[_Union[CustomerHealth, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., checked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., silent_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., stale_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ListSilentDevicesRequest(_message.Message):
    __slots__ = ("code", "silent_after", "page_size", "page_token")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SILENT_AFTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    code: str
    silent_after: _duration_pb2.Duration
    page_size: int
    page_token: str
    def __init__(self, code: _Optional[str] = ..., silent_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSilentDevicesResponse(_message.Message):
    __slots__ = ("devices", "next_page_token", "total_size")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[SilentDevice]
    next_page_token: str
    total_size: int
    def __init__(self, devices: _Optional[_Iterable[_Union[SilentDevice, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class GetFleetStorageRequest(_message.Message):
    __slots__ = ("code", "page_size", "page_token")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    code: str
    page_size: int
    page_token: str
    def __init__(self, code: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class StorageUse(_message.Message):
    __slots__ = ("hot_readings", "compressed_readings", "hot_bytes", "compressed_bytes", "compressed_units")
    HOT_READINGS_FIELD_NUMBER: _ClassVar[int]
    COMPRESSED_READINGS_FIELD_NUMBER: _ClassVar[int]
    HOT_BYTES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSED_BYTES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSED_UNITS_FIELD_NUMBER: _ClassVar[int]
    hot_readings: int
    compressed_readings: int
    hot_bytes: int
    compressed_bytes: int
    compressed_units: int
    def __init__(self, hot_readings: _Optional[int] = ..., compressed_readings: _Optional[int] = ..., hot_bytes: _Optional[int] = ..., compressed_bytes: _Optional[int] = ..., compressed_units: _Optional[int] = ...) -> None: ...

class CustomerStorage(_message.Message):
    __slots__ = ("code", "use")
    CODE_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    code: str
    use: StorageUse
    def __init__(self, code: _Optional[str] = ..., use: _Optional[_Union[StorageUse, _Mapping]] = ...) -> None: ...

class GetFleetStorageResponse(_message.Message):
    __slots__ = ("customers", "next_page_token", "fleet", "measured_at")
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FLEET_FIELD_NUMBER: _ClassVar[int]
    MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    customers: _containers.RepeatedCompositeFieldContainer[CustomerStorage]
    next_page_token: str
    fleet: StorageUse
    measured_at: _timestamp_pb2.Timestamp
    def __init__(self, customers: _Optional[_Iterable[_Union[CustomerStorage, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., fleet: _Optional[_Union[StorageUse, _Mapping]] = ..., measured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
