/* pii.c: placeholder, replaced by the real module in the next commit */
#include "postgres.h"
#include "fmgr.h"
#include "pgbank.h"
void
PiiStore(int64 customer, const char *phone, const char *national_id, const char *address)
{
}
PG_FUNCTION_INFO_V1(pgbank_get_customer);
Datum pgbank_get_customer(PG_FUNCTION_ARGS);
Datum
pgbank_get_customer(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_update_profile);
Datum pgbank_update_profile(PG_FUNCTION_ARGS);
Datum
pgbank_update_profile(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_erase_customer);
Datum pgbank_erase_customer(PG_FUNCTION_ARGS);
Datum
pgbank_erase_customer(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
PG_FUNCTION_INFO_V1(pgbank_export_my_data);
Datum pgbank_export_my_data(PG_FUNCTION_ARGS);
Datum
pgbank_export_my_data(PG_FUNCTION_ARGS)
{
	ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("not yet")));
}
