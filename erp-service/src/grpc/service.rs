//! `tandem.erp.v1.ErpService`: the public API (products, warehouses, stock, customers and
//! their finance, sales orders), mapped to the domain and back.

use prost::Message;
use tandem_proto::erp::v1::{self as pb, erp_service_server::ErpService};
use tonic::{Request, Response};

use convert::{known, parse_id};

use crate::{
    error::Error, inventory::StockRequest, orders::OrderFilter, products::ProductFilter,
    stock::AdjustmentReason, text,
};

use super::{ErpApi, Reply, convert, movement_result, once, reference, reply};

#[tonic::async_trait]
impl ErpService for ErpApi {
    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Reply<pb::Product> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/CreateProduct",
            &request,
            |r| &mut r.request_id,
            |p| convert::product(p).encode_to_vec(),
        )?;
        let product = request
            .product
            .ok_or_else(|| Error::invalid("product", "required"))?;
        let fields = convert::product_fields(&product, !request.inactive)?;
        let created = self
            .products
            .create(&product.sku, fields, once.as_ref())
            .await
            .map_err(|e| e.prefixed("product."))?;
        reply(created, convert::product)
    }

    async fn get_product(&self, request: Request<pb::GetProductRequest>) -> Reply<pb::Product> {
        let id = &request.get_ref().id;
        convert::product_key("id", id)?;
        Ok(Response::new(convert::product(
            &self.products.get(id).await?,
        )))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Reply<pb::ListProductsResponse> {
        let request = request.into_inner();
        text::check_no_nul(&[("sku_prefix", &request.sku_prefix)])?;
        let filter = ProductFilter {
            active: request.active,
            sku_prefix: request.sku_prefix,
        };
        let (products, next_page_token) = self
            .products
            .list(&filter, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(pb::ListProductsResponse {
            products: products.iter().map(convert::product).collect(),
            next_page_token,
        }))
    }

    async fn update_product(
        &self,
        request: Request<pb::UpdateProductRequest>,
    ) -> Reply<pb::Product> {
        let request = request.into_inner();
        let product = request
            .product
            .ok_or_else(|| Error::invalid("product", "required"))?;
        let (field, key) = if product.id.is_empty() {
            ("product.sku", product.sku.clone())
        } else {
            ("product.id", product.id.clone())
        };
        if key.is_empty() {
            return Err(Error::invalid("product.id", "an id or a sku").into());
        }
        convert::product_key(field, &key)?;
        let patch = convert::product_patch(&product, request.update_mask.as_ref())?;
        let expected = (product.version != 0).then_some(product.version);
        let updated = self
            .products
            .update(&key, patch, expected)
            .await
            .map_err(|e| e.prefixed("product."))?;
        Ok(Response::new(convert::product(&updated)))
    }

    async fn create_warehouse(
        &self,
        request: Request<pb::CreateWarehouseRequest>,
    ) -> Reply<pb::Warehouse> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/CreateWarehouse",
            &request,
            |r| &mut r.request_id,
            |w| convert::warehouse(w).encode_to_vec(),
        )?;
        let warehouse = request
            .warehouse
            .ok_or_else(|| Error::invalid("warehouse", "required"))?;
        let created = self
            .warehouses
            .create(&warehouse.code, &warehouse.display_name, once.as_ref())
            .await?;
        reply(created, convert::warehouse)
    }

    async fn list_warehouses(
        &self,
        request: Request<pb::ListWarehousesRequest>,
    ) -> Reply<pb::ListWarehousesResponse> {
        let request = request.into_inner();
        let (warehouses, next_page_token) = self
            .warehouses
            .list(request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(pb::ListWarehousesResponse {
            warehouses: warehouses.iter().map(convert::warehouse).collect(),
            next_page_token,
        }))
    }

    async fn receive_stock(
        &self,
        request: Request<pb::ReceiveStockRequest>,
    ) -> Reply<pb::StockMovementResult> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/ReceiveStock",
            &request,
            |r| &mut r.request_id,
            |o| movement_result(o).encode_to_vec(),
        )?;
        let movement = StockRequest::Receive {
            warehouse: request.warehouse,
            quantity: request.quantity,
        };
        let outcome = self
            .stock
            .movement(
                &request.sku,
                movement,
                reference(&request.reference),
                once.as_ref(),
            )
            .await?;
        reply(outcome, movement_result)
    }

    async fn adjust_stock(
        &self,
        request: Request<pb::AdjustStockRequest>,
    ) -> Reply<pb::StockMovementResult> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/AdjustStock",
            &request,
            |r| &mut r.request_id,
            |o| movement_result(o).encode_to_vec(),
        )?;
        let reason = convert::adjustment_reason(request.reason())
            .ok_or_else(|| Error::invalid("reason", "required"))?;
        if reason == AdjustmentReason::Count {
            return Err(Error::invalid(
                "reason",
                "COUNT is written by ErpSync.CountStock; use COUNT_CORRECTION",
            )
            .into());
        }
        let movement = StockRequest::Adjust {
            warehouse: request.warehouse,
            delta: request.quantity_delta,
            reason,
        };
        let outcome = self
            .stock
            .movement(
                &request.sku,
                movement,
                reference(&request.reference),
                once.as_ref(),
            )
            .await?;
        reply(outcome, movement_result)
    }

    async fn transfer_stock(
        &self,
        request: Request<pb::TransferStockRequest>,
    ) -> Reply<pb::StockMovementResult> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/TransferStock",
            &request,
            |r| &mut r.request_id,
            |o| movement_result(o).encode_to_vec(),
        )?;
        let movement = StockRequest::Transfer {
            from: request.from_warehouse,
            to: request.to_warehouse,
            quantity: request.quantity,
        };
        let outcome = self
            .stock
            .movement(
                &request.sku,
                movement,
                reference(&request.reference),
                once.as_ref(),
            )
            .await?;
        reply(outcome, movement_result)
    }

    async fn get_stock_level(
        &self,
        request: Request<pb::GetStockLevelRequest>,
    ) -> Reply<pb::StockLevel> {
        let request = request.get_ref();
        let level = self.stock.level(&request.sku, &request.warehouse).await?;
        Ok(Response::new(convert::level(&level)))
    }

    async fn list_stock_levels(
        &self,
        request: Request<pb::ListStockLevelsRequest>,
    ) -> Reply<pb::ListStockLevelsResponse> {
        let request = request.into_inner();
        text::check_no_nul(&[("sku", &request.sku), ("warehouse", &request.warehouse)])?;
        let (levels, next_page_token) = self
            .stock
            .levels(
                &request.sku,
                &request.warehouse,
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListStockLevelsResponse {
            levels: levels.iter().map(convert::level).collect(),
            next_page_token,
        }))
    }

    async fn list_stock_movements(
        &self,
        request: Request<pb::ListStockMovementsRequest>,
    ) -> Reply<pb::ListStockMovementsResponse> {
        let request = request.into_inner();
        text::check_no_nul(&[("sku", &request.sku), ("warehouse", &request.warehouse)])?;
        let order_id = match request.order_id.as_str() {
            "" => None,
            id => Some(parse_id("order_id", id)?),
        };
        let (movements, next_page_token) = self
            .stock
            .movements(
                &request.sku,
                &request.warehouse,
                order_id,
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListStockMovementsResponse {
            movements: movements.iter().map(convert::movement).collect(),
            next_page_token,
        }))
    }

    async fn get_customer(&self, request: Request<pb::GetCustomerRequest>) -> Reply<pb::Customer> {
        let id = parse_id("id", &request.get_ref().id)?;
        let customer = self.customers.get(id).await?;
        let finance = self.finances.view(id).await?;
        Ok(Response::new(convert::customer(&customer, Some(&finance))))
    }

    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Reply<pb::ListCustomersResponse> {
        let request = request.into_inner();
        let (customers, next_page_token) = self
            .customers
            .list(request.page_size, &request.page_token)
            .await?;
        let ids: Vec<_> = customers.iter().map(|c| c.profile.id).collect();
        let finances = self.finances.views(&ids).await?;
        Ok(Response::new(pb::ListCustomersResponse {
            customers: customers
                .iter()
                .map(|c| convert::customer(c, finances.get(&c.profile.id)))
                .collect(),
            next_page_token,
        }))
    }

    async fn set_credit_terms(
        &self,
        request: Request<pb::SetCreditTermsRequest>,
    ) -> Reply<pb::CustomerFinance> {
        let request = request.into_inner();
        let id = parse_id("customer_id", &request.customer_id)?;
        let patch = convert::terms_patch(&request)?;
        if request.version.is_some_and(|version| version < 0) {
            return Err(Error::invalid("version", "must not be negative").into());
        }
        let view = self.finances.set_terms(id, patch, request.version).await?;
        Ok(Response::new(convert::finance(&view)))
    }

    async fn record_payment(
        &self,
        request: Request<pb::RecordPaymentRequest>,
    ) -> Reply<pb::CustomerFinance> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/RecordPayment",
            &request,
            |r| &mut r.request_id,
            |view| convert::finance(view).encode_to_vec(),
        )?;
        let id = parse_id("customer_id", &request.customer_id)?;
        let amount = request
            .amount
            .ok_or_else(|| Error::invalid("amount", "required"))?;
        let view = self
            .finances
            .record_payment(
                id,
                amount.amount_minor,
                &amount.currency_code,
                &request.reference,
                once.as_ref(),
            )
            .await?;
        reply(view, convert::finance)
    }

    async fn get_sales_order(
        &self,
        request: Request<pb::GetSalesOrderRequest>,
    ) -> Reply<pb::SalesOrder> {
        let id = parse_id("id", &request.get_ref().id)?;
        Ok(Response::new(convert::order(&self.orders.get(id).await?)))
    }

    async fn list_sales_orders(
        &self,
        request: Request<pb::ListSalesOrdersRequest>,
    ) -> Reply<pb::ListSalesOrdersResponse> {
        let request = request.into_inner();
        text::check_no_nul(&[("crm_order_id", &request.crm_order_id)])?;
        let filter = OrderFilter {
            status: convert::status_filter(known("status", request.status)?),
            customer_id: match request.customer_id.as_str() {
                "" => None,
                id => Some(parse_id("customer_id", id)?),
            },
            crm_order_id: (!request.crm_order_id.is_empty()).then_some(request.crm_order_id),
        };
        let (orders, next_page_token) = self
            .orders
            .list(&filter, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(pb::ListSalesOrdersResponse {
            orders: orders.iter().map(convert::order).collect(),
            next_page_token,
        }))
    }

    async fn release_credit_hold(
        &self,
        request: Request<pb::ReleaseCreditHoldRequest>,
    ) -> Reply<pb::SalesOrder> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/ReleaseCreditHold",
            &request,
            |r| &mut r.request_id,
            |order| convert::order(order).encode_to_vec(),
        )?;
        let id = parse_id("id", &request.id)?;
        let released = self.orders.release_credit_hold(id, once.as_ref()).await?;
        reply(released, convert::order)
    }

    async fn ship_order(&self, request: Request<pb::ShipOrderRequest>) -> Reply<pb::SalesOrder> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/ShipOrder",
            &request,
            |r| &mut r.request_id,
            |order| convert::order(order).encode_to_vec(),
        )?;
        let id = parse_id("id", &request.id)?;
        reply(self.orders.ship(id, once.as_ref()).await?, convert::order)
    }

    async fn invoice_order(
        &self,
        request: Request<pb::InvoiceOrderRequest>,
    ) -> Reply<pb::SalesOrder> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/InvoiceOrder",
            &request,
            |r| &mut r.request_id,
            |order| convert::order(order).encode_to_vec(),
        )?;
        let id = parse_id("id", &request.id)?;
        reply(
            self.orders.invoice(id, once.as_ref()).await?,
            convert::order,
        )
    }
}
